"""Oracle tests of the world model (fp32, whole model): backends, causality, cached inference == DART forward."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from oniris_env.bundle import WORLD_MODEL_FILE, shipped_weights_dir
from oniris_env.world_model import WorldModel, WorldModelConfig, frame_actions, load_world_model
from oniris_env.world_model.attention import dart_frame_mask

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ATOL = 1e-5


# Every token count per frame we use or might: 24 (default: 8x12 latent, patch 2), 96 (8x12, patch 1),
# odd 15 (3x5), tiny 6 (patch 2 on 4x6). All below the 128 tokens where the prototype's masks broke.
CONFIGS = {
    "tiny-24": WorldModelConfig.tiny(),
    "odd-15": WorldModelConfig.tiny(latent_height=3, latent_width=5),
    "patch2-6": WorldModelConfig.tiny(patch_size=2),
    "default-layout-24": WorldModelConfig.tiny(latent_channels=8, latent_height=8, latent_width=12, patch_size=2),
    "p1-96": WorldModelConfig.tiny(latent_channels=8, latent_height=8, latent_width=12, window=3, depth=1),
    "kernel1": WorldModelConfig.tiny(conv_kernel=1, window=2),
    "default": WorldModelConfig.default(),  # the shipped architecture (test_shipped_weights_use_the_default_preset)
}


def random_model(cfg: WorldModelConfig, seed: int = 0) -> WorldModel:
    """A model with every weight random (the zero-initialised gates would make blocks identities)."""
    model = WorldModel(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p.shape[-1] if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / fan_in**0.5 if p.dim() > 1 else 0.1))
    return model


def clip(cfg: WorldModelConfig, b: int, n: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, *cfg.latent_shape, generator=g)
    sigma_ctx = torch.rand(b, n, generator=g) * 0.5
    sigma = torch.exp(torch.randn(b, n, generator=g))
    return {
        "x_clean": x + sigma_ctx[..., None, None, None] * torch.randn(x.shape, generator=g),
        "sigma_ctx": sigma_ctx,
        "x_noisy": x + sigma[..., None, None, None] * torch.randn(x.shape, generator=g),
        "sigma": sigma,
        "actions": frame_actions(torch.randint(0, cfg.num_actions, (b, n - 1), generator=g), cfg.start_action),
    }


def test_frame_mask_is_the_dart_rule():
    n, w = 5, 2
    mask = dart_frame_mask(n, w)
    for q in range(2 * n):
        for k in range(2 * n):
            i, j = q % n, k % n
            if q < n:
                expected = k < n and i - w <= j <= i
            else:
                expected = (k < n and i - w <= j < i) or (k >= n and j == i)
            assert bool(mask[q, k]) == expected, (q, k)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_training_path_equals_dense_oracle(name):
    cfg = CONFIGS[name]
    model = random_model(cfg)
    batch = clip(cfg, 2, cfg.window + 3)  # longer than the window: the window is part of the rule
    with torch.no_grad():
        fast, oracle = model(**batch, backend="fast"), model(**batch, backend="oracle")
    torch.testing.assert_close(fast.denoised, oracle.denoised, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast.reward_logits, oracle.reward_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast.term_logits, oracle.term_logits, atol=ATOL, rtol=0)
    assert oracle.denoised.std() > 0.1  # the random model is not trivially the identity


def test_flex_attention_forward_equals_dense_oracle():
    cfg = CONFIGS["odd-15"]
    model = random_model(cfg)
    batch = clip(cfg, 1, cfg.window + 2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager flex on CPU warns that it is slow
        flex, oracle = model(**batch, backend="flex"), model(**batch, backend="oracle")
    torch.testing.assert_close(flex.denoised, oracle.denoised, atol=ATOL, rtol=0)
    torch.testing.assert_close(flex.term_logits, oracle.term_logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("copy", ["x_clean", "x_noisy"])
def test_perturbing_frame_j_changes_no_earlier_output(copy):
    cfg = CONFIGS["tiny-24"]
    model = random_model(cfg)
    n, j = 6, 3
    batch = clip(cfg, 2, n)
    with torch.no_grad():
        base = model(**batch)
        perturbed = dict(batch)
        perturbed[copy] = batch[copy].clone()
        perturbed[copy][:, j] += torch.randn(perturbed[copy][:, j].shape)
        out = model(**perturbed)
    torch.testing.assert_close(out.denoised[:, :j], base.denoised[:, :j], atol=0, rtol=0)
    torch.testing.assert_close(out.reward_logits[:, :j], base.reward_logits[:, :j], atol=0, rtol=0)
    torch.testing.assert_close(out.term_logits[:, :j], base.term_logits[:, :j], atol=0, rtol=0)
    if copy == "x_noisy":  # a noisy frame is seen by nothing but itself
        assert (out.denoised[:, j] - base.denoised[:, j]).abs().max() > 1e-3
        torch.testing.assert_close(out.denoised[:, j + 1 :], base.denoised[:, j + 1 :], atol=0, rtol=0)
        torch.testing.assert_close(out.term_logits, base.term_logits, atol=0, rtol=0)
    else:  # clean frame j is context for the noisy frames after j (not j itself), and feeds the heads at j
        torch.testing.assert_close(out.denoised[:, j], base.denoised[:, j], atol=0, rtol=0)
        assert (out.denoised[:, j + 1] - base.denoised[:, j + 1]).abs().max() > 1e-3
        assert (out.term_logits[:, j] - base.term_logits[:, j]).abs().max() > 1e-4


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cached_inference_equals_dart_forward(name):
    """Feed clean frames one at a time through the caches and denoise the next: equal to one DART pass,
    including frames beyond the window (sliding cache) and the heads on the committed frames."""
    cfg = CONFIGS[name]
    model = random_model(cfg)
    n = cfg.window + 4
    batch = clip(cfg, 2, n)
    with torch.no_grad():
        ref = model(**batch, backend="oracle")
        cache = model.init_cache(2)
        for i in range(n):
            noisy = model.step(batch["x_noisy"][:, i], batch["sigma"][:, i], batch["actions"][:, i], cache)
            assert noisy.cache is cache  # denoising alone never touches the cache
            torch.testing.assert_close(noisy.denoised, ref.denoised[:, i], atol=ATOL, rtol=0)
            clean = model.step(
                batch["x_clean"][:, i], batch["sigma_ctx"][:, i], batch["actions"][:, i], cache, commit=True
            )
            torch.testing.assert_close(clean.reward_logits, ref.reward_logits[:, i], atol=ATOL, rtol=0)
            torch.testing.assert_close(clean.term_logit, ref.term_logits[:, i], atol=ATOL, rtol=0)
            cache = clean.cache
            assert cache.history().tolist() == [min(i + 1, cfg.window)] * 2


def test_cache_is_shift_invariant_at_large_positions():
    """RoPE on absolute positions reduced in float64: frame 100 000 behaves like frame 0."""
    cfg = CONFIGS["tiny-24"]
    model = random_model(cfg)
    batch = clip(cfg, 1, cfg.window + 2)
    outs = []
    for start in (0, 100_000):
        cache = model.init_cache(1)
        cache = dataclasses.replace(cache, position=cache.position + start)
        with torch.no_grad():
            for i in range(cfg.window + 2):
                out = model.step(batch["x_clean"][:, i], batch["sigma_ctx"][:, i], batch["actions"][:, i], cache,
                                 commit=True)
                cache = out.cache
        outs.append(out.denoised)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=0)


def test_commit_mask_and_reset_keep_dreams_independent():
    """Dream 1 restarts mid-rollout (reset_where + masked commits): both dreams equal their solo runs."""
    cfg = CONFIGS["tiny-24"]
    model = random_model(cfg)
    a, b = clip(cfg, 1, 9, seed=2), clip(cfg, 1, 4, seed=3)

    def solo(batch, n):
        cache = model.init_cache(1)
        for i in range(n):
            out = model.step(batch["x_clean"][:, i], batch["sigma_ctx"][:, i], batch["actions"][:, i], cache,
                             commit=True)
            cache = out.cache
        return out.denoised

    with torch.no_grad():
        cache = model.init_cache(2)
        for i in range(5):  # both dreams run dream a's first 5 frames
            x = batch_of(a, i, 2)
            cache = model.step(*x, cache, commit=True).cache
        cache = cache.reset_where(torch.tensor([False, True]))
        for i in range(4):  # dream 1 receives b's 4 frames, dream 0 continues with a's frames 5..8
            x = [torch.cat([u[:1], v[:1]]) for u, v in zip(batch_of(a, 5 + i, 1), batch_of(b, i, 1), strict=True)]
            out = model.step(*x, cache, commit=True)
            cache = out.cache
        torch.testing.assert_close(out.denoised[:1], solo(a, 9), atol=ATOL, rtol=0)
        torch.testing.assert_close(out.denoised[1:], solo(b, 4), atol=ATOL, rtol=0)
        # a masked commit leaves the other dream's history untouched
        x = batch_of(a, 0, 2)
        masked = model.step(*x, cache, commit=torch.tensor([True, False])).cache
        probe = batch_of(b, 0, 2)
        torch.testing.assert_close(
            model.step(*probe, masked).denoised[1], model.step(*probe, cache).denoised[1], atol=ATOL, rtol=0
        )


def test_in_place_commits_equal_value_commits():
    """The ring buffer written in place gives bit-identical outputs to immutable commits, past the window and
    with a masked commit, and the value path leaves its input cache untouched."""
    cfg = CONFIGS["tiny-24"]
    model = random_model(cfg)
    batch = clip(cfg, 2, cfg.window + 5)
    outs = {}
    with torch.no_grad():
        for in_place in (False, True):
            cache, outs[in_place] = model.init_cache(2), []
            for i in range(cfg.window + 5):
                commit = torch.tensor([True, i % 3 != 1])  # dream 1 skips some commits
                before = [k.clone() for k in cache.keys]
                out = model.step(*batch_of(batch, i, 2), cache, commit=commit, in_place=in_place)
                if not in_place:
                    assert all(torch.equal(a, b) for a, b in zip(before, cache.keys, strict=True))
                cache = out.cache
                outs[in_place].append(out.denoised)
    for a, b in zip(outs[False], outs[True], strict=True):
        assert torch.equal(a, b)


def test_splice_equals_reset_and_masked_commits():
    """Restarting dream 1 in a cache of its own and splicing it in == resetting it in place with masked commits."""
    cfg = CONFIGS["tiny-24"]
    model = random_model(cfg)
    a, b = clip(cfg, 1, 9, seed=2), clip(cfg, 1, 4, seed=3)
    with torch.no_grad():
        cache = model.init_cache(2)
        for i in range(5):
            cache = model.step(*batch_of(a, i, 2), cache, commit=True).cache
        masked = cache.reset_where(torch.tensor([False, True]))
        for i in range(4):
            masked = model.step(*batch_of(b, i, 2), masked, commit=torch.tensor([False, True])).cache
        fresh = model.init_cache(1)
        for i in range(4):
            fresh = model.step(*batch_of(b, i, 1), fresh, commit=True, in_place=True).cache
        spliced = cache.splice(torch.tensor([1]), fresh)
        probe = batch_of(a, 5, 2)
        torch.testing.assert_close(
            model.step(*probe, spliced).denoised, model.step(*probe, masked).denoised, atol=ATOL, rtol=0
        )
        torch.testing.assert_close(spliced.position, masked.position)
        with pytest.raises(ValueError, match="expected 1 rows"):
            cache.splice(torch.tensor([0, 1]), fresh)
        in_place = cache.splice(torch.tensor([1]), fresh, in_place=True)  # consumes `cache`
        for got, want in zip(dataclasses.astuple(in_place), dataclasses.astuple(spliced), strict=True):
            for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,),
                            strict=True):
                assert torch.equal(g, w)
        assert in_place.keys[0] is cache.keys[0]  # written into the given buffers, no copy


def batch_of(batch, i, b):
    """(x, sigma, action) of frame i, repeated to b dreams."""
    return [batch[k][:, i].expand(b, *batch[k].shape[2:]) for k in ("x_clean", "sigma_ctx", "actions")]


def test_config_checks():
    with pytest.raises(ValueError, match="patch_size"):
        WorldModelConfig.tiny(patch_size=4)
    with pytest.raises(ValueError, match="conv_kernel"):
        WorldModelConfig.tiny(conv_kernel=9)
    with pytest.raises(ValueError, match="preset"):
        WorldModelConfig.preset("huge")
    cfg = WorldModelConfig.default()
    assert cfg.tokens_per_frame == 24 and WorldModelConfig.from_dict(cfg.to_dict()) == cfg


def test_shipped_weights_use_the_default_preset():
    """The exactness tests above run on `WorldModelConfig.default()`: it must be the shipped architecture (only
    sigma_data, measured on the data, differs)."""
    path = shipped_weights_dir() / WORLD_MODEL_FILE
    if not path.is_file():
        pytest.skip("no shipped world model in this checkout")
    shipped = load_world_model(path).config
    assert dataclasses.replace(shipped, sigma_data=1.0) == WorldModelConfig.default()
