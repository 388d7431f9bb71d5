"""Reward and termination heads' math: symlog two-hot rewards (DreamerV3, Hafner et al. 2023, sec. 3).

LunarLander's shaped rewards are small and continuous per step (~[-5, 5]) with rare +-100 terminal events. A
categorical over bins evenly spaced in symlog space represents both without letting the rare large targets
dominate a squared loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def symlog(x: Tensor) -> Tensor:
    """sign(x) * ln(1 + |x|) (DreamerV3 eq. 9)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """Inverse of `symlog` (DreamerV3 eq. 9)."""
    return torch.sign(x) * torch.expm1(x.abs())


def reward_bins(num_bins: int, symlog_max: float, device: torch.device | None = None) -> Tensor:
    """`(num_bins,)` bin centres in symlog space, evenly spaced in [-symlog_max, symlog_max]."""
    return torch.linspace(-symlog_max, symlog_max, num_bins, device=device)


def two_hot(reward: Tensor, bins: Tensor) -> Tensor:
    """Two-hot targets `(..., K)` for rewards `(...)`: weight split between the two bins around symlog(r)
    (DreamerV3 eq. 10); values beyond the grid go to the end bins."""
    y = symlog(reward.float()).clamp(bins[0], bins[-1])
    upper = torch.searchsorted(bins, y.contiguous(), right=False).clamp(1, len(bins) - 1)
    lower = upper - 1
    w_upper = (y - bins[lower]) / (bins[upper] - bins[lower])
    target = torch.zeros(*y.shape, len(bins), device=y.device)
    target.scatter_(-1, lower.unsqueeze(-1), (1 - w_upper).unsqueeze(-1))
    target.scatter_add_(-1, upper.unsqueeze(-1), w_upper.unsqueeze(-1))
    return target


def reward_loss(logits: Tensor, reward: Tensor, bins: Tensor) -> Tensor:
    """Cross-entropy of `logits (..., K)` against the two-hot encoding of `reward (...)`; returns `(...)`."""
    return -(two_hot(reward, bins) * F.log_softmax(logits.float(), dim=-1)).sum(-1)


def reward_value(logits: Tensor, bins: Tensor) -> Tensor:
    """Predicted reward `(...)`: symexp of the expected bin under softmax(logits (..., K)) (DreamerV3 eq. 11)."""
    return symexp((F.softmax(logits.float(), dim=-1) * bins).sum(-1))
