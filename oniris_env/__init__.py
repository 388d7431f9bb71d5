"""oniris-env: Gymnasium's LunarLander as a learned world.

Importing this package registers the environment ids and does nothing else (no torch import):

- `OnirisLunarLanderReal-v0`: the real game behind 64 x 96 pixels (`oniris_env.real_env`).
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from oniris_env.spec import DEFAULT_SPEC, GameSpec, SpecMismatchError

__version__ = "0.1.0"
__all__ = ["DEFAULT_SPEC", "GameSpec", "SpecMismatchError", "__version__"]

if "OnirisLunarLanderReal-v0" not in registry:
    register(id="OnirisLunarLanderReal-v0", entry_point="oniris_env.real_env:OnirisLunarLanderReal")
