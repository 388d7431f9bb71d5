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
from oniris_env.world_model import frame_actions
from training.evaluate.data import RealEpisode
from training.evaluate.open_loop import Replays


@torch.inference_mode()
def head_outputs(
    bundle: Bundle, episodes: list[RealEpisode], seed: int, sigma: float = DEFAULT_SAMPLER.sigma_min
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Predicted rewards and termination logits `(L,)` of every transition of each real episode, each frame
    committed with context noise `sigma` (all episodes in one batch; shorter ones are padded with their last
    frame and the padded steps dropped)."""
    vae, wm = bundle.vae, bundle.world_model
    device = next(wm.parameters()).device
    steps = max(e.length for e in episodes) + 1  # frames of the longest episode
    latents = [vae.encode_frames(e.frames[None])[0].to(device) for e in episodes]  # (L + 1, C, h, w) each
    x = torch.stack([torch.cat([z, z[-1:].expand(steps - len(z), *z.shape[1:])]) for z in latents])
    actions = np.zeros((len(episodes), steps - 1), np.int64)
    for i, e in enumerate(episodes):
        actions[i, : e.length] = e.actions
    cond = frame_actions(torch.as_tensor(actions, device=device), wm.config.start_action)
    generator = torch.Generator(device=device).manual_seed(seed)
    sig = torch.full((len(episodes),), sigma, device=device)
    cache = wm.init_cache(len(episodes), device=device)
    rewards, logits = [], []
    for j in range(steps):
        noise = torch.randn(x[:, j].shape, generator=generator, device=device)
        out = wm.step(x[:, j] + sigma * noise, sig, cond[:, j], cache, commit=True, in_place=True)
        cache = out.cache
        if j > 0:  # frame j's outputs are those of transition j - 1
            rewards.append(out.reward.float().cpu().numpy())
            logits.append(out.term_logit.float().cpu().numpy())
    pred_r, pred_l = np.stack(rewards, axis=1), np.stack(logits, axis=1)  # (n, steps - 1)
    return [pred_r[i, : e.length] for i, e in enumerate(episodes)], [
        pred_l[i, : e.length] for i, e in enumerate(episodes)
    ]


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
