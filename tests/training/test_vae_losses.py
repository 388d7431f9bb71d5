"""VAE losses: zero at a perfect reconstruction, foreground weighting favours the rare lander pixels."""

from __future__ import annotations

import pytest
import torch

from training.vae.config import RECON_LOSSES
from training.vae.losses import excess_loss, foreground_mask, group_kl, lander_excess, reconstruction_loss


def scene() -> torch.Tensor:
    """A black frame `(1, 1, 3, 16, 24)` in [-1, 1] with a white ground strip and a 2x2 purple lander."""
    x = -torch.ones(1, 1, 3, 16, 24)
    x[..., 12:, :] = 1.0
    x[..., :, 4:6, 10:12] = torch.tensor([128, 102, 230]).view(3, 1, 1) / 127.5 - 1
    return x


@pytest.mark.parametrize("kind", RECON_LOSSES)
def test_losses_vanish_at_perfect_reconstruction(kind: str) -> None:
    x = scene()
    assert reconstruction_loss(x, x, kind).item() == 0.0
    assert reconstruction_loss(x + 0.1, x, kind).item() > 0.0


def test_color_weighting_prices_the_lander_above_the_sky() -> None:
    x = scene()
    lost_lander, noisy_sky = x.clone(), x.clone()
    lost_lander[..., 4:6, 10:12] = -1.0  # lander erased: 4 pixels wrong
    noisy_sky[..., 0:1, 0:4] = -1.0 + 2 * 0.9  # 4 sky pixels equally wrong on average
    assert foreground_mask(x, "color")[..., 4, 10].item() == 1.0 and foreground_mask(x, "color")[..., 12, 0] == 0
    assert reconstruction_loss(lost_lander, x, "color_l1") > 3 * reconstruction_loss(noisy_sky, x, "color_l1")


def test_excess_finds_only_the_lander_and_penalises_tint() -> None:
    x = scene()
    e = lander_excess(x)
    assert e[0, 0, 4, 10].item() == pytest.approx((230 - 128) / 255, abs=1e-3) and e[0, 0, 12:].sum() == 0
    tinted = x.clone()
    tinted[:, :, 0:2, 12:] -= 4 / 127.5  # blue above red/green on the ground: a purple tint
    assert excess_loss(x, x).item() == 0.0 and excess_loss(tinted, x).item() > 0.0


def test_group_kl_is_zero_for_the_prior_and_positive_otherwise() -> None:
    zeros = torch.zeros(2, 3, 4, 2, 3)
    assert group_kl(zeros, zeros, 100).item() == 0.0
    assert group_kl(zeros + 1.0, zeros, 100).item() == pytest.approx(0.5 * 24 / 100)
