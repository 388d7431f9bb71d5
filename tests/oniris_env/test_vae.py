"""Oracle tests for the group-causal VAE (fp32, tiny configs on small frames)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from oniris_env.vae import VAE_PRESETS, GroupCausalVAE, VAEConfig

ATOL = 1e-5


def tiny_config(temporal_down: tuple[bool, bool]) -> VAEConfig:
    return dataclasses.replace(
        VAE_PRESETS["tiny"], frame_height=16, frame_width=24, temporal_down=temporal_down, patch_size=1
    )


# g = 1; g = 2 compressed early or late (non-palindromic stacks); g = 4; g = 2 with space-to-depth input.
CONFIGS = {
    "g1": tiny_config((False, False)),
    "g2_early": tiny_config((True, False)),
    "g2_late": tiny_config((False, True)),
    "g4": tiny_config((True, True)),
    "g2_patch2": dataclasses.replace(tiny_config((False, True)), patch_size=2),
}


def make_model(cfg: VAEConfig, seed: int = 0) -> GroupCausalVAE:
    torch.manual_seed(seed)
    model = GroupCausalVAE(cfg).eval()
    # Random, non-trivial buffers so the normalisation is exercised too.
    model.latent_shift.normal_()
    model.latent_scale.uniform_(0.5, 2.0)
    return model


def frames(cfg: VAEConfig, B: int, T: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, 3, cfg.frame_height, cfg.frame_width, generator=g) * 2 - 1


@pytest.mark.parametrize("name", CONFIGS)
def test_derived_shapes(name: str) -> None:
    cfg = CONFIGS[name]
    model = make_model(cfg)
    g = cfg.time_compression
    with torch.no_grad():
        mean, logvar = model.encode(frames(cfg, 2, 3 * g))
        assert mean.shape == logvar.shape == (2, 3, *cfg.latent_shape)
        assert model.decode(mean).shape == (2, 3 * g, 3, cfg.frame_height, cfg.frame_width)
    assert VAE_PRESETS["default"].latent_shape[1:] == (8, 12)
    assert VAE_PRESETS["default"].time_compression == 1


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("extra", [0, 1])
def test_streaming_encode_matches_whole(name: str, extra: int) -> None:
    cfg = CONFIGS[name]
    g = cfg.time_compression
    if extra and g == 1:
        pytest.skip("every length is a multiple of g = 1")
    model = make_model(cfg)
    x = frames(cfg, 2, 6 * g + extra)
    with torch.no_grad():
        whole_mean, whole_logvar = model.encode(x)
        cache, means, logvars, start = None, [], [], 0
        for n in (g, 3 * g, g, g, extra):  # group-aligned chunks, then the partial tail
            if n == 0:
                continue
            m, lv, cache = model.encode_step(x[:, start : start + n], cache)
            means.append(m)
            logvars.append(lv)
            start += n
    assert start == x.shape[1]
    torch.testing.assert_close(torch.cat(means, 1), whole_mean, atol=ATOL, rtol=0)
    torch.testing.assert_close(torch.cat(logvars, 1), whole_logvar, atol=ATOL, rtol=0)
    assert cache.closed == bool(extra)


@pytest.mark.parametrize("name", CONFIGS)
def test_streaming_decode_matches_whole(name: str) -> None:
    cfg = CONFIGS[name]
    model = make_model(cfg)
    z = torch.randn(2, 6, *cfg.latent_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = model.decode(z)
        cache, parts, start = None, [], 0
        for n in (1, 3, 1, 1):
            x, cache = model.decode_step(z[:, start : start + n], cache)
            parts.append(x)
            start += n
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=ATOL, rtol=0)


def test_long_stream_has_constant_cache_size() -> None:
    cfg = CONFIGS["g2_late"]
    model = make_model(cfg)
    cache = None
    sizes = []
    with torch.no_grad():
        for step in range(6):
            _, cache = model.decode_step(torch.randn(1, 1, *cfg.latent_shape), cache)
            sizes.append(sum(t.numel() for t in cache.tensors if t is not None))
            del step
    assert len(set(sizes[1:])) == 1


@pytest.mark.parametrize("name", CONFIGS)
def test_encoder_is_group_causal(name: str) -> None:
    cfg = CONFIGS[name]
    g = cfg.time_compression
    model = make_model(cfg)
    x = frames(cfg, 1, 6 * g)
    T = x.shape[1]
    batch = x.repeat(T + 1, 1, 1, 1, 1)  # row 0 unperturbed, row 1 + t has frame t flipped
    for t in range(T):
        batch[1 + t, t] = -batch[1 + t, t]
    with torch.no_grad():
        out, _ = model.encode(batch)
    base = out[:1]
    for t in range(T):
        j = t // g
        torch.testing.assert_close(out[1 + t, :j], base[0, :j], atol=1e-6, rtol=0)  # nothing before t's group
        assert (out[1 + t, j] - base[0, j]).abs().max() > 1e-4  # t's own group sees it


@pytest.mark.parametrize("name", CONFIGS)
def test_decoder_is_group_causal(name: str) -> None:
    cfg = CONFIGS[name]
    g = cfg.time_compression
    model = make_model(cfg)
    z = torch.randn(1, 6, *cfg.latent_shape, generator=torch.Generator().manual_seed(3))
    n = z.shape[1]
    batch = z.repeat(n + 1, 1, 1, 1, 1)  # row 0 unperturbed, row 1 + j has latent j shifted
    for j in range(n):
        batch[1 + j, j] += 1.0
    with torch.no_grad():
        out = model.decode(batch)
    for j in range(n):
        torch.testing.assert_close(out[1 + j, : j * g], out[0, : j * g], atol=1e-6, rtol=0)
        for t in range(j * g, (j + 1) * g):  # every frame of group j depends on latent j
            assert (out[1 + j, t] - out[0, t]).abs().max() > 1e-4


def test_uint8_helpers_round_trip_shapes_and_normalisation() -> None:
    cfg = CONFIGS["g2_late"]
    model = make_model(cfg)
    u8 = np.random.default_rng(0).integers(0, 256, (2, 5, cfg.frame_height, cfg.frame_width, 3), dtype=np.uint8)
    latents = model.encode_frames(u8)
    assert latents.shape == (2, 3, *cfg.latent_shape) and latents.dtype == torch.float32
    x = torch.from_numpy(u8).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    with torch.no_grad():
        mean, _ = model.encode(x)
    expected = (mean - model.latent_shift.view(1, 1, -1, 1, 1)) / model.latent_scale.view(1, 1, -1, 1, 1)
    torch.testing.assert_close(latents, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(model.encode_frames(torch.from_numpy(u8)), latents, atol=0, rtol=0)
    out = model.decode_latents(latents)
    assert out.shape == (2, 6, cfg.frame_height, cfg.frame_width, 3) and out.dtype == torch.uint8
    # bf16 autocast path runs and stays close to fp32.
    assert (model.encode_frames(u8, bf16=True) - latents).abs().max() < 0.5


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((1, 2, 16, 24, 3), dtype=np.float32), "uint8"),
        (torch.zeros(1, 2, 16, 24, 3), "uint8"),
        (np.zeros((2, 16, 24, 3), dtype=np.uint8), r"expected shape \(B, T, 16, 24, 3\)"),
        (np.zeros((1, 2, 64, 96, 3), dtype=np.uint8), r"got \(1, 2, 64, 96, 3\)"),
        ([[0]], "uint8 tensor or ndarray"),
    ],
)
def test_encode_frames_rejects_bad_input(bad: object, match: str) -> None:
    model = make_model(CONFIGS["g1"])
    with pytest.raises(ValueError, match=match):
        model.encode_frames(bad)


def test_decode_latents_rejects_bad_input() -> None:
    cfg = CONFIGS["g1"]
    model = make_model(cfg)
    with pytest.raises(ValueError, match=r"expected shape \(B, T, 4, 4, 6\), got \(1, 4, 4, 6\)"):
        model.decode_latents(torch.zeros(1, *cfg.latent_shape))
    with pytest.raises(ValueError, match="floating-point"):
        model.decode_latents(torch.zeros(1, 1, *cfg.latent_shape, dtype=torch.long))


def test_closed_encode_stream_refuses_more_frames() -> None:
    cfg = CONFIGS["g2_late"]
    model = make_model(cfg)
    with torch.no_grad():
        _, _, cache = model.encode_step(frames(cfg, 1, 3), None)
        with pytest.raises(ValueError, match="partial group"):
            model.encode_step(frames(cfg, 1, 2), cache)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(
                temporal_down=(True, True, True),
                spatial_down=(True, True, False),
                channels=(8, 8, 8),
                blocks=(1, 1, 1),
                decoder_blocks=(1, 1, 1),
            ),
            "g must be 1, 2 or 4",
        ),
        (dict(blocks=(1,)), "one entry per stage"),
        (dict(frame_height=30), "not divisible"),
        (dict(channels=(32, 50, 96)), "multiples of norm_groups"),
    ],
)
def test_config_checks(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(VAE_PRESETS["default"], **kwargs)


def test_config_round_trips_through_dict() -> None:
    for cfg in list(VAE_PRESETS.values()) + list(CONFIGS.values()):
        assert VAEConfig.from_dict(cfg.to_dict()) == cfg
