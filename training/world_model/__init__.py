"""World-model training (DART): `train_world_model(latents_dir, out_dir, preset)`.

The trainer is imported on first use (`train_world_model` below), so code that only needs a part of this package
(`oniris-env evaluate`, the head refit) does not load it.
"""

from typing import TYPE_CHECKING, Any

from training.world_model.config import TrainWorldModelConfig

if TYPE_CHECKING:
    from training.world_model.train import train_world_model

__all__ = ["TrainWorldModelConfig", "train_world_model"]


def __getattr__(name: str) -> Any:
    if name == "train_world_model":
        from training.world_model.train import train_world_model

        return train_world_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
