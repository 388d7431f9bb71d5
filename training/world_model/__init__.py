"""World-model training (DART): `train_world_model(latents_dir, out_dir, preset)`."""

from training.world_model.config import TrainWorldModelConfig
from training.world_model.train import train_world_model

__all__ = ["TrainWorldModelConfig", "train_world_model"]
