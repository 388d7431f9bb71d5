"""The reward and termination heads on real frames only: what they get right when the dynamics are perfect.

The replays of `open_loop` judge the heads on dreamt frames, so a late or missing predicted end mixes two errors:
the dream reaching the crash at the wrong step, and the head misreading the frame. Here every real frame of an
episode is committed to the world model's cache exactly as the sampler commits a generated one (x + sigma_min * n,
labelled sigma_min) and the heads' outputs for the transition into it are read: the dynamics play no part.
"""

from __future__ import annotations

import numpy as np
import torch

from oniris_env.bundle import Bundle
from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig
from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD, threshold_logit
from training.evaluate.data import RealEpisode
from training.evaluate.open_loop import Replays
from training.heads.record import teacher_forced_heads


def head_outputs(
    bundle: Bundle, episodes: list[RealEpisode], seed: int, sigma: float = DEFAULT_SAMPLER.sigma_min
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Predicted rewards and termination logits `(L,)` of every transition of each real episode, each frame
    committed with context noise `sigma` (`teacher_forced_heads`, all episodes in one batch)."""
    with torch.inference_mode():
        latents = [bundle.vae.encode_frames(e.frames[None])[0] for e in episodes]  # (L + 1, C, h, w) each
    traces = teacher_forced_heads(
        bundle.world_model, latents, [e.actions for e in episodes], sigma, seed, episode_batch=len(episodes)
    )
    return [t.rewards.numpy() for t in traces], [t.term_logits.numpy() for t in traces]


def teacher_forced(
    bundle: Bundle,
    episodes: list[RealEpisode],
    seed: int,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
    threshold: float = DEFAULT_TERMINATION_THRESHOLD,
) -> Replays:
    """`Replays` of the heads on whole real episodes, frames committed at the sampler's context noise and the
    dream's termination threshold (see module docstring)."""
    rewards, logits = head_outputs(bundle, episodes, seed, sampler.sigma_min)
    logit_threshold = threshold_logit(threshold)
    replays = Replays()
    for e, r, lg in zip(episodes, rewards, logits, strict=True):
        replays.pred_rewards.append(r.astype(np.float32))
        replays.pred_terminated.append(lg > logit_threshold)
        replays.pred_term_logits.append(lg.astype(np.float32))
        replays.real_rewards.append(e.rewards)
        replays.real_terminated.append(e.terminated)
        replays.outcomes.append(e.outcome)
    return replays
