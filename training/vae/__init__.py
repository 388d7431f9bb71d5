"""Training and evaluation of the group-causal VAE (`oniris-env train vae`)."""

from training.vae.config import RECON_LOSSES, TRAIN_VAE_PRESETS, TrainVAEConfig
from training.vae.evaluate import evaluate_vae, reconstruct_episode, save_reconstruction_png
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
