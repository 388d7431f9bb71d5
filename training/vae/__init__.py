"""Training and evaluation of the group-causal VAE (`oniris-env train vae`).

The trainer is imported on first use (`train_vae` below), so code that only evaluates a VAE (`oniris-env
evaluate`) does not load it.
"""

from typing import TYPE_CHECKING, Any

from training.vae.config import RECON_LOSSES, TRAIN_VAE_PRESETS, TrainVAEConfig
from training.vae.evaluate import evaluate_vae, reconstruct_episode, save_reconstruction_png

if TYPE_CHECKING:
    from training.vae.train import train_vae

__all__ = [
    "RECON_LOSSES",
    "TRAIN_VAE_PRESETS",
    "TrainVAEConfig",
    "evaluate_vae",
    "reconstruct_episode",
    "save_reconstruction_png",
    "train_vae",
]


def __getattr__(name: str) -> Any:
    if name == "train_vae":
        from training.vae.train import train_vae

        return train_vae
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
