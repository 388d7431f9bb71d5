"""VAE losses: reconstruction losses that keep the rare foreground, and the group-wise KL.

LunarLander frames are mostly black sky and white terrain; the lander (purple), its flames (red/orange) and the
flags (yellow) cover ~1% of the pixels. A plain L2 loss is satisfied by sky and terrain and blurs the lander
away, so the losses below weight the rare pixels up. All take `x_hat, x` of shape `(B, T, 3, H, W)` in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def foreground_mask(x: Tensor, kind: str) -> Tensor:
    """`(B, T, 1, H, W)` float mask of foreground pixels in the original `x`, dilated by one pixel.

    kind 'bright': max channel > 20 / 255 (not near-black sky; includes the terrain).
    kind 'color': saturation max - min > 20 / 255 (lander, flames, flags; not sky or grey/white terrain).
    """
    u = (x + 1.0) * 0.5  # [0, 1]
    if kind == "bright":
        m = u.amax(dim=2, keepdim=True) > 20 / 255
    elif kind == "color":
        m = (u.amax(dim=2, keepdim=True) - u.amin(dim=2, keepdim=True)) > 20 / 255
    else:
        raise ValueError(f"unknown foreground kind {kind!r}")
    B, T = x.shape[:2]
    m = F.max_pool2d(m.float().flatten(0, 1), 3, 1, 1)  # dilate: also weight the pixels around an edge
    return m.reshape(B, T, 1, *m.shape[-2:])


def reconstruction_loss(
    x_hat: Tensor, x: Tensor, kind: str, fg_weight: float = 20.0, worst_k_fraction: float = 0.02
) -> Tensor:
    """Scalar reconstruction loss of `kind`:

    - 'l2': mean squared error (the baseline that loses the lander).
    - 'fg_l1': L1 with weight 1 + fg_weight on pixels brighter than the sky (`foreground_mask(.., 'bright')`).
    - 'color_l1': L1 with weight 1 + fg_weight on coloured pixels (`foreground_mask(.., 'color')`).
    - 'worst_k_l1': mean L1 + mean of the worst `worst_k_fraction` of each frame's per-pixel L1 errors.
    """
    x_hat = x_hat.float()
    if kind == "l2":
        return F.mse_loss(x_hat, x)
    err = (x_hat - x).abs()  # (B, T, 3, H, W)
    if kind in ("fg_l1", "color_l1"):
        w = 1.0 + fg_weight * foreground_mask(x, "bright" if kind == "fg_l1" else "color")
        return (err * w).mean() / w.mean()
    if kind == "worst_k_l1":
        per_pixel = err.mean(dim=2).flatten(2)  # (B, T, H * W)
        k = max(1, int(worst_k_fraction * per_pixel.shape[-1]))
        return err.mean() + per_pixel.topk(k, dim=-1).values.mean()
    raise ValueError(f"unknown reconstruction loss {kind!r}")


def lander_excess(x: Tensor) -> Tensor:
    """LunarLander's lander colour signature per pixel, `(B, T, H, W)` in [0, 1]: max(0, b - max(r, g)).

    The lander is the only purple object; `training.lander.lander_centroid` locates it by this map (on the
    0..255 scale), so a faint blue tint anywhere (e.g. on the white terrain) shifts the located lander.
    """
    u = (x.float() + 1.0) * 0.5
    return (u[:, :, 2] - torch.maximum(u[:, :, 0], u[:, :, 1])).clamp_min(0.0)


def excess_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean L1 between the colour-signature maps of reconstruction and original (`lander_excess`)."""
    return (lander_excess(x_hat) - lander_excess(x)).abs().mean()


def group_kl(mean: Tensor, logvar: Tensor, pixels_per_group: int) -> Tensor:
    """KL(q(z | x) || N(0, I)) per latent group, in nats per pixel value, averaged over groups.

    mean, logvar: `(B, T', C, h, w)`, one latent frame per temporal group of g frames. Each group's KL is summed
    over its latent elements and divided by the pixel values it decodes to (g * 3 * H * W), so the weight of
    the KL does not depend on g or on the clip length (a group-wise KL as in "How to train your VAE").
    """
    kl = 0.5 * (mean.float().square() + logvar.float().exp() - 1.0 - logvar.float())
    return kl.sum(dim=(2, 3, 4)).mean() / pixels_per_group
