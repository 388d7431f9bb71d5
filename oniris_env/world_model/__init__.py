"""Autoregressive diffusion world model: next latent frame by EDM denoising, plus reward and termination heads.

Importing this package imports torch; `oniris_env/__init__.py` must not import it eagerly.
"""

from oniris_env.world_model.cache import LayerEntry, WorldModelCache
from oniris_env.world_model.config import WorldModelConfig
from oniris_env.world_model.io import load_world_model, read_metadata, save_world_model
from oniris_env.world_model.model import DartOutput, StepOutput, WorldModel, frame_actions

__all__ = [
    "DartOutput",
    "LayerEntry",
    "StepOutput",
    "WorldModel",
    "WorldModelCache",
    "WorldModelConfig",
    "frame_actions",
    "load_world_model",
    "read_metadata",
    "save_world_model",
]
