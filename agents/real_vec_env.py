"""`RealVecEnv`: B real LunarLander games as a Stable-Baselines3 `VecEnv`, seen the way an agent sees the dream.

Observations (`obs`):
- `'latent'`: each new 64 x 96 frame is encoded by the shipped VAE, streaming (its encode cache, one row per game;
  a new episode starts its row's stream afresh while the others go on), so the agent gets the
  `(C, h, w)` float32 normalised latent the dream hands it in `obs_mode="latent"`. Encoding a whole recorded episode
  in one pass gives the same latents (`tests/agents/test_real_vec_env.py`).
- `'state'`: the true 8-d state (nothing rendered), for the heuristic pilot and the model-free reference only.

Episodes: game i plays the seeds drawn from `seeds` in order (an iterator shared by the B games: the first B
episodes get the first B seeds, then each finished game takes the next one). When a finite `seeds` runs out, a
finished game idles: it is not stepped again, its observation stays zero, its reward 0 and it is never done, so an
evaluation plays exactly its episodes and not one real step more. Same-step autoreset as SB3 expects:
a finished game's `infos[i]` holds `terminal_observation`, `TimeLimit.truncated`, `episode_seed`, `outcome`
('landed', 'crashed', 'flew_off', 'timeout'); wrap it in SB3's `VecMonitor` for episode returns (`agents.envs.observe`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from oniris_env.real_env import OnirisLunarLanderReal, episode_seed
from oniris_env.spec import DEFAULT_SPEC
from oniris_env.vae import GroupCausalVAE, StreamCache

OBS_KINDS = ("latent", "state")


def seed_stream(base_seed: int) -> Iterator[int]:
    """The endless seeds `episode_seed(base_seed, 0), episode_seed(base_seed, 1), ...`."""
    return (episode_seed(base_seed, i) for i in itertools.count())


class LatentEncoder:
    """B streams of real frames -> normalised VAE latents, one streaming encode call for all B per step."""

    def __init__(self, vae: GroupCausalVAE) -> None:
        if vae.config.time_compression != 1:
            raise ValueError(f"streaming one latent per env step needs a VAE with time_compression 1, got "
                             f"{vae.config.time_compression}")
        self.vae = vae
        self.cache: StreamCache | None = None

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.vae.config.latent_shape)

    @torch.inference_mode()
    def start(self, rows: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Start new streams in `rows (B,)` bool from their first frames `(n, H, W, 3)` uint8 (the other streams
        are untouched); return the n latents `(n, C, h, w)` float32."""
        rows = np.asarray(rows, dtype=bool)
        latents, sub = self.vae.encode_frames_step(frames[:, None], None)
        if rows.all():
            self.cache = sub
        else:
            if self.cache is None:
                raise RuntimeError("start the streams of all rows before starting a subset")
            idx = torch.as_tensor(np.flatnonzero(rows))
            tensors = []
            for big, small in zip(self.cache.tensors, sub.tensors, strict=True):
                if big is not None:
                    big = big.clone()
                    big[idx] = small
                tensors.append(big)
            self.cache = StreamCache(tuple(tensors))
        return latents[:, 0].cpu().numpy()

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """`(B, H, W, 3)` uint8 frames, the next one of every stream -> `(B, C, h, w)` float32 latents."""
        if self.cache is None:
            raise RuntimeError("encode() before start(): start every stream with its first frame")
        latents, self.cache = self.vae.encode_frames_step(frames[:, None], self.cache)
        return latents[:, 0].cpu().numpy()


class RealVecEnv(VecEnv):
    """`num_envs` real games (see module docstring).

    Args:
        num_envs: B.
        obs: 'latent' (needs `vae`) or 'state'.
        vae: the VAE whose latents the agent reads (the dream's own, `load_bundle(...).vae`).
        seeds: the episode seeds, shared by all games (default: `seed_stream(0)`; `seed(s)` restarts it at
            `seed_stream(s)` for the next `reset()`).
        action_repeat: physics steps per env step (the dream's spec).
        render: keep each game's 64 x 96 frame for `get_images()` (videos), also with obs='state'.
    """

    def __init__(
        self,
        num_envs: int,
        obs: str = "latent",
        vae: GroupCausalVAE | None = None,
        seeds: Iterable[int] | None = None,
        action_repeat: int = DEFAULT_SPEC.action_repeat,
        render: bool = False,
    ) -> None:
        if obs not in OBS_KINDS:
            raise ValueError(f"obs must be one of {OBS_KINDS}, got {obs!r}")
        if obs == "latent" and vae is None:
            raise ValueError("obs='latent' needs the VAE that encodes the frames (vae=...)")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.obs_kind = obs
        self.games = [
            OnirisLunarLanderReal(
                action_repeat=action_repeat,
                obs_type="pixels" if obs == "latent" else "state",
                render_mode="rgb_array" if render else None,
            )
            for _ in range(num_envs)
        ]
        self.encoder = LatentEncoder(vae) if obs == "latent" else None
        if self.encoder is not None:
            space = spaces.Box(-np.inf, np.inf, self.encoder.latent_shape, dtype=np.float32)
        else:
            space = self.games[0].observation_space
        super().__init__(num_envs, space, self.games[0].action_space)
        self.seeds: Iterator[int] = iter(seeds) if seeds is not None else seed_stream(0)
        self.episode_seeds = np.zeros(num_envs, dtype=np.int64)
        self.idle = np.zeros(num_envs, dtype=bool)
        self.steps_played = 0
        """Real env steps taken since construction (every game that did not idle)."""
        self._actions: np.ndarray | None = None

    def _start(self, i: int) -> np.ndarray:
        """Reset game i with the next seed; its raw observation (frame or state), zeros if it now idles."""
        seed = next(self.seeds, None)
        if seed is None:
            self.idle[i] = True
            return np.zeros(self.games[i].observation_space.shape, self.games[i].observation_space.dtype)
        self.episode_seeds[i] = seed
        raw, _ = self.games[i].reset(seed=int(seed))
        return raw

    def _first(self, rows: np.ndarray, raw: Sequence[np.ndarray]) -> np.ndarray:
        """Observations of the first frames / states `raw` of the episodes just started in `rows (B,)`."""
        if self.encoder is None:
            return np.stack(raw).astype(np.float32)
        return self.encoder.start(rows, np.stack(raw))

    def reset(self) -> np.ndarray:
        seeds = [s for s in self._seeds if s is not None]
        if seeds:
            self.seeds = seed_stream(int(seeds[0]))
        self._reset_seeds()
        self._reset_options()
        self.idle[:] = False
        raw = [self._start(i) for i in range(self.num_envs)]
        self.reset_infos = [{"episode_seed": int(s)} for s in self.episode_seeds]
        return self._first(np.ones(self.num_envs, dtype=bool), raw)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        raw, rewards = [], np.zeros(self.num_envs, dtype=np.float32)
        dones = np.zeros(self.num_envs, dtype=bool)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i, game in enumerate(self.games):
            if self.idle[i]:
                raw.append(np.zeros(game.observation_space.shape, game.observation_space.dtype))
                continue
            ob, reward, terminated, truncated, info = game.step(int(self._actions[i]))
            self.steps_played += 1
            rewards[i] = reward
            dones[i] = terminated or truncated
            if dones[i]:
                infos[i].update(
                    {
                        "TimeLimit.truncated": bool(truncated and not terminated),
                        "episode_seed": int(self.episode_seeds[i]),
                        "outcome": info["outcome"],
                    }
                )
            raw.append(ob)
        self._actions = None
        raw_np = np.stack(raw)
        final = self.encoder.encode(raw_np) if self.encoder is not None else raw_np.astype(np.float32)
        final[self.idle] = 0.0
        if not dones.any():
            return final, rewards, dones, infos
        obs = final.copy()
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = final[i]
        obs[dones] = self._first(dones, [self._start(int(i)) for i in np.flatnonzero(dones)])
        obs[self.idle] = 0.0
        return obs, rewards, dones, infos

    def close(self) -> None:
        for game in self.games:
            game.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [game.render() if game.render_mode else None for game in self.games]

    def _indices(self, indices: None | int | Iterable[int]) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: None | int | Iterable[int] = None) -> list[Any]:
        return [getattr(self.games[i], attr_name) for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: None | int | Iterable[int] = None) -> None:
        for i in self._indices(indices):
            setattr(self.games[i], attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: None | int | Iterable[int] = None, **method_kwargs: Any
    ) -> list[Any]:
        return [getattr(self.games[i], method_name)(*method_args, **method_kwargs) for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: None | int | Iterable[int] = None) -> list[bool]:
        return [isinstance(self.games[i], wrapper_class) for i in self._indices(indices)]
