"""EDM2 power-function EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion
Models", sec. 3.1 and Algorithm 2 in the appendix)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def std_to_exp(std: float) -> float:
    """The power-function exponent gamma whose EMA profile has relative std `std` (EDM2 eq. 3, solved)."""
    t = std**-2
    return float(np.roots([1, 7, 16 - t, 12 - t]).real.max())


class PowerFunctionEMA:
    """theta_ema <- beta(t) theta_ema + (1 - beta(t)) theta with beta(t) = (1 - 1/t)^(gamma + 1) (EDM2 eq. 2).

    Works on a model's floating-point state (parameters and buffers) by name, so it is plain data.
    """

    def __init__(self, model: nn.Module, std: float) -> None:
        self.std = std
        self.gamma = std_to_exp(std)
        self.state: dict[str, Tensor] = {
            k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in the weights after optimiser step `step` (1-based)."""
        beta = (1 - 1 / step) ** (self.gamma + 1)
        for k, v in model.state_dict().items():
            if k in self.state:
                self.state[k].lerp_(v.detach().float(), 1 - beta)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the EMA weights into `model` (same architecture)."""
        model.load_state_dict({**model.state_dict(), **self.state})

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = set(self.state) ^ set(state)
        if missing:
            raise ValueError(f"EMA state does not match the model: {sorted(missing)[:5]}")
        # keep each tensor on the device of the live EMA (a checkpoint is loaded on the CPU)
        self.state = {k: v.float().to(self.state[k].device).clone() for k, v in state.items()}
