"""`DreamSimulator`: B dreams stepped together, one world-model forward per denoising call for all of them.

Holds the models (VAE + world model), the start-context bank and the state of B dreams:
- the world model's `WorldModelCache` (KV window + conv inputs), advanced by the cached sampler;
- the VAE's streaming decode cache, so decoding one new frame per step costs O(1) (skipped in latent mode);
- the last latent and frame of every dream.

A dream is reset from real context frames (drawn from the bank or given): they are encoded by the VAE (a bank
context once, on its first draw: the simulator keeps its latents), then each
latent is committed to the world model's cache with the inference context noise (`sampler.commit_context`) and
decoded through the decoder's cache. Resetting a subset leaves the other dreams untouched. All randomness comes
from `self.generator` (torch) and the numpy generator passed to `reset`, so a seeded run reproduces exactly.
The gymnasium env, the gymnasium VectorEnv and the SB3 VecEnv are thin adapters over this class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from oniris_env.bundle import Bundle, StartContexts, check_context, check_models
from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig, commit_context, sample_next
from oniris_env.spec import DEFAULT_SPEC, GameSpec
from oniris_env.vae import GroupCausalVAE, StreamCache
from oniris_env.world_model import WorldModel, frame_actions

#: A transition terminates when sigmoid(term_logit) exceeds this (the head is trained with a positive-class weight,
#: see `TrainWorldModelConfig.term_pos_weight`).
DEFAULT_TERMINATION_THRESHOLD = 0.5


def threshold_logit(threshold: float) -> float:
    """The logit a termination probability threshold in (0, 1) corresponds to: `log(p / (1 - p))`."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"termination_threshold must be in (0, 1), got {threshold}")
    return float(np.log(threshold / (1 - threshold)))


def latents_to_numpy(latents: Tensor) -> np.ndarray:
    """`latents (..., C, h, w)` as a float32 numpy array on the host that owns its memory: the one conversion the
    adapters apply to the latents they hand out (observations, `info["latent"]`), which must never change later."""
    return latents.float().cpu().numpy().copy()


@dataclass(frozen=True)
class DreamStep:
    """What one simulator step returns for the B dreams: numpy arrays on the host, except `latents`, which stays a
    tensor on the simulator's device (evaluation and benchmarks keep working on it there); `latents_numpy()` is the
    host copy the adapters hand out."""

    latents: Tensor
    """`(B, C, h, w)` float32 normalised latents of the new frames (on the simulator's device)."""
    frames: np.ndarray | None
    """`(B, H, W, 3)` uint8 decoded frames, or None when the simulator does not decode."""
    rewards: np.ndarray
    """`(B,)` float32 predicted rewards of the transitions."""
    terminated: np.ndarray
    """`(B,)` bool: the termination head's probability exceeds the threshold."""
    term_logits: np.ndarray
    """`(B,)` float32 termination logits (`terminated` is `sigmoid(term_logits) > threshold`)."""

    def latents_numpy(self) -> np.ndarray:
        """`(B, C, h, w)` float32 host copy of `latents` (`latents_to_numpy`); each call converts again."""
        return latents_to_numpy(self.latents)


class DreamSimulator:
    """B dreams of the world model (see module docstring).

    Args:
        vae, world_model: the models (eval mode, same device).
        contexts: the start-context bank.
        num_dreams: B.
        sampler: denoising schedule and solver.
        decode: keep the VAE decode cache and return frames (False: latents only, faster).
        termination_threshold: a transition terminates when sigmoid(term_logit) > this.
        step_fn: optional replacement for `world_model.step` with the same signature (e.g. `torch.compile`d),
            used by `step` (resets, which run on the n restarted dreams only, use `world_model.step`). The cache
            is a ring of W slots from the start, so its shapes never change and a compiled step never recompiles.
    """

    def __init__(
        self,
        vae: GroupCausalVAE,
        world_model: WorldModel,
        contexts: StartContexts,
        num_dreams: int,
        sampler: SamplerConfig = DEFAULT_SAMPLER,
        decode: bool = True,
        termination_threshold: float = DEFAULT_TERMINATION_THRESHOLD,
        spec: GameSpec = DEFAULT_SPEC,
        step_fn: Callable | None = None,
    ) -> None:
        if num_dreams < 1:
            raise ValueError(f"num_dreams must be >= 1, got {num_dreams}")
        self.termination_logit = threshold_logit(termination_threshold)
        check_models(vae, world_model, "the given models")
        check_context(contexts.frames, contexts.actions, spec, batched=True)
        self.vae, self.world_model, self.contexts = vae, world_model, contexts
        self.num_dreams, self.sampler, self.decode, self.spec = num_dreams, sampler, decode, spec
        self.step_fn = step_fn
        self.device = next(world_model.parameters()).device
        self.generator = torch.Generator(self.device)
        b, cfg = num_dreams, world_model.config
        self.cache = world_model.init_cache(b, device=self.device)
        self.decode_cache: StreamCache | None = None
        self.latents = torch.zeros(b, *cfg.latent_shape, device=self.device)
        self.frames = np.zeros((b, *spec.frame_shape), dtype=np.uint8)
        self.started = np.zeros(b, dtype=bool)
        self._bank: dict[int, Tensor] = {}  # bank index -> (t, C, h, w) latents of its context (`_bank_latents`)

    @property
    def window(self) -> int:
        """W: the frames a generated frame attends to (the cache's length)."""
        return self.world_model.config.window

    @property
    def bank_context_length(self) -> int:
        """Frames of each start context in the bank."""
        return int(self.contexts.frames.shape[1])

    @classmethod
    def from_bundle(cls, bundle: Bundle, num_dreams: int, **kwargs) -> DreamSimulator:
        return cls(bundle.vae, bundle.world_model, bundle.contexts, num_dreams, spec=bundle.spec, **kwargs)

    def seed(self, seed: int) -> None:
        """Seed the sampler's torch generator (the env derives `seed` from its `np_random`)."""
        self.generator.manual_seed(int(seed))

    def _mask(self, mask: np.ndarray | None) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_dreams, dtype=bool)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.num_dreams,):
            raise ValueError(f"mask must have shape ({self.num_dreams},), got {mask.shape}")
        return mask

    @torch.inference_mode()
    def reset(
        self,
        mask: np.ndarray | None,
        rng: np.random.Generator,
        frames: np.ndarray | None = None,
        actions: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Tensor]:
        """(Re)start the dreams where `mask (B,)` is True (None: all) from real context frames.

        Args:
            rng: draws the start contexts from the bank when `frames` is None.
            frames: optional `(n, T, H, W, 3)` uint8 context frames for the n dreams reset (T >= 1; only the last
                W = world-model window frames are kept); `actions (n, T - 1)` the actions between them.
        Returns:
            the last context frame `(n, H, W, 3)` uint8 of each reset dream and its latent `(n, C, h, w)`.
        """
        mask = self._mask(mask)
        idx = np.flatnonzero(mask)
        n = len(idx)
        if n == 0:
            return np.zeros((0, *self.spec.frame_shape), np.uint8), self.latents[:0]
        pick = None
        if frames is None:
            pick = rng.integers(len(self.contexts), size=n)
            frames, actions = self.contexts.frames[pick], self.contexts.actions[pick]
        else:
            check_context(frames, actions, self.spec, batched=True)
            if len(frames) != n:
                raise ValueError(f"got {len(frames)} contexts for {n} dreams to reset")
        t = min(frames.shape[1], self.world_model.config.window)  # keep the last W frames and the actions between
        actions = np.asarray(actions, dtype=np.int64)
        frames, actions = frames[:, -t:], actions[:, actions.shape[1] - (t - 1) :]
        if pick is None:
            latents = self.vae.encode_frames(frames).to(self.device)  # (n, T, C, h, w)
        else:
            latents = self._bank_latents(pick, t)
        cond = frame_actions(torch.as_tensor(actions, device=self.device), self.world_model.config.start_action)

        # the n restarted dreams get a fresh cache of n dreams, spliced into the B-dream cache: the other dreams'
        # state is untouched and no forward pass is spent on them
        rows = torch.as_tensor(idx, device=self.device)
        fresh = self.world_model.init_cache(n, device=self.device)
        fresh, _ = commit_context(
            self.world_model, fresh, latents, cond, self.generator, self.sampler.sigma_min, in_place=True
        )
        # in place: the simulator owns its caches (no copy of the B-dream window per reset)
        self.cache = fresh if n == self.num_dreams else self.cache.splice(rows, fresh, in_place=True)
        if self.decode:
            _, sub_cache = self.vae.decode_latents_step(latents, None)
            self.decode_cache = _scatter_stream_cache(self.decode_cache, sub_cache, rows, self.num_dreams)
        # copy on write: arrays handed out earlier (observations, infos) must never change
        self.latents = self.latents.index_put((rows,), latents[:, -1])
        self.frames = self.frames.copy()
        self.frames[idx] = frames[:, -1]
        self.started[idx] = True
        return frames[:, -1].copy(), latents[:, -1]

    def _bank_latents(self, pick: np.ndarray, t: int) -> Tensor:
        """`(n, t, C, h, w)` latents of the last t frames of bank contexts `pick (n,)`. The VAE encodes each
        context once, alone (so its latents never depend on what else was drawn), and the simulator keeps them:
        a reset from the bank then costs no VAE call (encoding was ~20 ms per reset dream on one core)."""
        for i in dict.fromkeys(pick.tolist()):
            if i not in self._bank:
                self._bank[i] = self.vae.encode_frames(self.contexts.frames[i : i + 1, -t:])[0].to(self.device)
        return torch.stack([self._bank[i] for i in pick.tolist()])

    def check_actions(self, actions: Any) -> np.ndarray:
        """`actions` as `(B,)` int64, or a `ValueError` saying what was expected; bools are refused (True is no
        action 1). The one batch-action check of the dream stack: `step` runs it, the vector adapters rely on it."""
        a = np.asarray(actions)
        n = self.spec.num_actions
        if a.shape != (self.num_dreams,) or not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= n:
            raise ValueError(
                f"actions must be {self.num_dreams} ints in [0, {n}) (shape ({self.num_dreams},)), "
                f"got {a.tolist() if a.size <= 64 else a.shape}"
            )
        return a.astype(np.int64)

    @torch.inference_mode()
    def step(self, actions: np.ndarray) -> DreamStep:
        """Advance all B dreams by one frame under `actions (B,)` (ints in [0, num_actions)), in one batch.

        Raises `ValueError` for bad actions (`check_actions`) and `RuntimeError` for a dream never reset; either
        way nothing is stepped."""
        actions = self.check_actions(actions)
        if not self.started.all():
            raise RuntimeError(f"dreams {np.flatnonzero(~self.started).tolist()} were never reset: call reset first")
        a = torch.as_tensor(actions, device=self.device)
        out = sample_next(
            self.world_model, self.cache, a, self.generator, self.sampler, step_fn=self.step_fn, in_place=True
        )
        self.cache, self.latents = out.cache, out.latent
        frames = None
        if self.decode:
            decoded, self.decode_cache = self.vae.decode_latents_step(out.latent[:, None], self.decode_cache)
            self.frames = decoded[:, 0].cpu().numpy()
            frames = self.frames.copy()
        logits = out.term_logit.float().cpu().numpy()
        return DreamStep(
            latents=out.latent,
            frames=frames,
            rewards=out.reward.float().cpu().numpy().astype(np.float32),
            terminated=logits > self.termination_logit,
            term_logits=logits,
        )

    def render_frames(self) -> np.ndarray:
        """`(B, H, W, 3)` uint8 current frames (decoded; requires `decode=True`)."""
        if not self.decode:
            raise RuntimeError("this simulator does not decode (latent mode without rendering)")
        return self.frames.copy()


def _scatter_stream_cache(big: StreamCache | None, sub: StreamCache, rows: Tensor, batch: int) -> StreamCache:
    """Write the per-layer decode caches of n reset dreams into rows `rows` of the B-dream cache (in place)."""
    out = []
    old = big.tensors if big is not None else (None,) * len(sub.tensors)
    for b, s in zip(old, sub.tensors, strict=True):
        if s is None:
            out.append(b)
            continue
        # None = zeros before the first frame; otherwise written in place (the simulator owns its decode cache)
        full = s.new_zeros(batch, *s.shape[1:]) if b is None else b
        full[rows] = s
        out.append(full)
    return StreamCache(tuple(out))
