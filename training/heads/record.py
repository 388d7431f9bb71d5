"""What the heads read and say for each transition: on real frames committed as the sampler commits a generated
one (`teacher_forced_heads`), and in short dreams started from real frames like the env's resets (`dreamt_heads`).

The env's heads read dreamt frames, and a head fitted on real frames alone did worse there than the one trained
with the trunk (docs/RESULTS.md): the refit learns from both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from oniris_env.sampler import SamplerConfig, commit_context, sample_next
from oniris_env.world_model import WorldModel, frame_actions


@dataclass
class HeadTrace:
    """The heads' view of L transitions: a real episode's (`teacher_forced_heads`) or a dream's (`dreamt_heads`)."""

    head_inputs: Tensor
    """`(L, D)` float32: what the heads read for each transition (from the frame it led to)."""
    rewards: Tensor
    """`(L,)` the heads' predicted rewards."""
    term_logits: Tensor
    """`(L,)` their termination logits."""


@torch.inference_mode()
def teacher_forced_heads(
    model: WorldModel,
    latents: list[Tensor],
    actions: list[np.ndarray],
    sigma: float,
    seed: int,
    episode_batch: int = 64,
    progress: bool = False,
) -> list[HeadTrace]:
    """Commit every real frame of each episode (`latents[i]` `(L_i + 1, C, h, w)`, `actions[i]` `(L_i,)`) as the
    sampler commits a generated frame, at context noise `sigma`, and return what the heads see and say for each
    transition. Episodes run `episode_batch` at a time, grouped by length; shorter ones are padded with their
    last frame and the padded steps dropped."""
    if len(latents) != len(actions):
        raise ValueError(f"{len(latents)} latent sequences but {len(actions)} action sequences")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    order = np.argsort([len(a) for a in actions], kind="stable")
    traces: list[HeadTrace | None] = [None] * len(latents)
    groups = [order[s : s + episode_batch] for s in range(0, len(order), episode_batch)]
    for group in tqdm(groups, desc="head inputs", unit="batch", disable=not progress):
        steps = max(len(latents[i]) for i in group)
        x = torch.stack([_pad_last(latents[i].to(device).float(), steps) for i in group])
        acts = np.zeros((len(group), steps - 1), np.int64)
        for k, i in enumerate(group):
            acts[k, : len(actions[i])] = actions[i]
        cond = frame_actions(torch.as_tensor(acts, device=device), model.config.start_action)
        sig = torch.full((len(group),), sigma, device=device)
        cache = model.init_cache(len(group), device=device)
        pooled, rewards, logits = [], [], []
        for j in range(steps):
            noise = torch.randn(x[:, j].shape, generator=generator, device=device)
            out = model.step(x[:, j] + sigma * noise, sig, cond[:, j], cache, commit=True, in_place=True)
            cache = out.cache
            if j > 0:  # frame j's outputs are those of transition j - 1
                pooled.append(out.head_input.float().cpu())
                rewards.append(out.reward.float().cpu())
                logits.append(out.term_logit.float().cpu())
        pooled_t, rewards_t, logits_t = torch.stack(pooled, 1), torch.stack(rewards, 1), torch.stack(logits, 1)
        for k, i in enumerate(group):
            n = len(actions[i])
            traces[i] = HeadTrace(pooled_t[k, :n].clone(), rewards_t[k, :n].clone(), logits_t[k, :n].clone())
    return traces  # type: ignore[return-value]


@torch.inference_mode()
def dreamt_heads(
    model: WorldModel,
    latents: list[Tensor],
    actions: list[np.ndarray],
    steps: int,
    context: int,
    sampler: SamplerConfig,
    seed: int,
    episode_batch: int = 64,
    progress: bool = False,
    end_offset: int = 0,
) -> list[HeadTrace | None]:
    """The heads on dreamt frames, where the env runs them: for every episode of at least `steps + context - 1 +
    end_offset` transitions, the `context` real latent frames before its transitions [L - end_offset - steps,
    L - end_offset) are committed and those transitions are dreamt under the real actions (`end_offset` 0: the
    terminal-anchored replays of `oniris-env evaluate`; > 0: earlier stretches, whose transitions never end).
    Returns what the heads see and say for each dreamt transition (`steps` each), None for shorter episodes."""
    if len(latents) != len(actions):
        raise ValueError(f"{len(latents)} latent sequences but {len(actions)} action sequences")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    recorded: list[Tensor] = []

    def recording_step(x, sigma, action, cache, commit=False, in_place=False):
        out = model.step(x, sigma, action, cache, commit=commit, in_place=in_place)
        if commit is not False:
            recorded.append(out.head_input)
        return out

    fit = [i for i, a in enumerate(actions) if len(a) >= steps + context - 1 + end_offset]
    traces: list[HeadTrace | None] = [None] * len(latents)
    groups = [fit[s : s + episode_batch] for s in range(0, len(fit), episode_batch)]
    for group in tqdm(groups, desc="dreamt head inputs", unit="batch", disable=not progress):
        starts = [(i, len(actions[i]) - end_offset - steps) for i in group]  # (episode, frame where its dream starts)
        ctx = torch.stack([latents[i][f - context + 1 : f + 1].to(device).float() for i, f in starts])
        ctx_actions = np.stack([actions[i][f - context + 1 : f] for i, f in starts])
        cond = frame_actions(torch.as_tensor(ctx_actions, device=device), model.config.start_action)
        cache = model.init_cache(len(group), device=device)
        cache, _ = commit_context(model, cache, ctx, cond, generator, sampler.sigma_min, in_place=True)
        pooled, rewards, logits = [], [], []
        for s in range(steps):
            a = torch.as_tensor([actions[i][f + s] for i, f in starts], device=device)
            out = sample_next(model, cache, a, generator, sampler, step_fn=recording_step, in_place=True)
            cache = out.cache
            pooled.append(recorded.pop().float().cpu())
            rewards.append(out.reward.float().cpu())
            logits.append(out.term_logit.float().cpu())
        pooled_t, rewards_t, logits_t = torch.stack(pooled, 1), torch.stack(rewards, 1), torch.stack(logits, 1)
        for k, i in enumerate(group):
            traces[i] = HeadTrace(pooled_t[k].clone(), rewards_t[k].clone(), logits_t[k].clone())
    return traces


def _pad_last(z: Tensor, steps: int) -> Tensor:
    return torch.cat([z, z[-1:].expand(steps - len(z), *z.shape[1:])])
