"""oniris-env: Gymnasium's LunarLander as a learned world.

Importing this package registers the environment ids and does nothing else (no torch import):

- `OnirisLunarLanderReal-v0`: the real game behind 64 x 96 pixels (`oniris_env.real_env`).
- `OnirisLunarLander-v0`: the dream (`oniris_env.dream_env`), with `gym.make_vec` support (`oniris_env.vector`).

`oniris_env.load_vae(path=None)` loads the VAE shipped in the package (torch is imported then, not before).
"""

from __future__ import annotations

from typing import Any

from gymnasium.envs.registration import register, registry

from oniris_env.spec import DEFAULT_SPEC, GameSpec, SpecMismatchError

__version__ = "0.1.0"
__all__ = ["DEFAULT_SPEC", "GameSpec", "SpecMismatchError", "__version__", "load_vae"]

_LAZY = {"load_vae": "oniris_env.vae"}  # torch-backed API, imported on first use


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oniris_env' has no attribute {name!r}")

if "OnirisLunarLanderReal-v0" not in registry:
    register(id="OnirisLunarLanderReal-v0", entry_point="oniris_env.real_env:OnirisLunarLanderReal")
if "OnirisLunarLander-v0" not in registry:
    register(
        id="OnirisLunarLander-v0",
        entry_point="oniris_env.dream_env:OnirisLunarLanderDream",
        vector_entry_point="oniris_env.vector:OnirisLunarLanderVector",
        max_episode_steps=DEFAULT_SPEC.max_episode_steps,
    )
