"""Group-causal video VAE: LunarLander frames (B, T, 64, 96, 3) uint8 <-> latents (B, T / g, C, 8, 12).

vae = load_vae()                       # weights shipped in the package
z = vae.encode_frames(frames_u8)       # normalised latents, posterior mean
frames = vae.decode_latents(z)         # uint8 frames
"""

from oniris_env.vae.checkpoint import load_vae, read_vae_metadata, save_vae, shipped_vae_path
from oniris_env.vae.config import VAE_PRESETS, VAEConfig
from oniris_env.vae.model import GroupCausalVAE, StreamCache

__all__ = [
    "VAE_PRESETS",
    "GroupCausalVAE",
    "StreamCache",
    "VAEConfig",
    "load_vae",
    "read_vae_metadata",
    "save_vae",
    "shipped_vae_path",
]
