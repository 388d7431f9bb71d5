"""Train a fresh head MLP on recorded head inputs with the world model's own head losses: two-hot reward
cross-entropy + class-weighted termination BCE."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from oniris_env.world_model.heads import reward_loss, reward_value
from training.heads.config import HeadRefitConfig


def fit_head(
    template: nn.Module,
    inputs: Tensor,
    rewards: Tensor,
    terminated: Tensor,
    bins: Tensor,
    config: HeadRefitConfig,
    progress: bool = False,
) -> nn.Module:
    """A fresh copy of `template` (the world model's `head`: `(N, D)` -> `K + 1` logits, the last one
    termination) trained on `inputs (N, D)` against `rewards (N,)` and `terminated (N,)` bool."""
    if not (len(inputs) == len(rewards) == len(terminated)) or len(inputs) == 0:
        raise ValueError(
            f"need as many (> 0) inputs, rewards and terminations: {len(inputs)}, {len(rewards)}, {len(terminated)}"
        )
    head = copy.deepcopy(template).float()
    with torch.random.fork_rng():  # fresh weights from the config's seed, without moving the caller's stream
        torch.manual_seed(config.seed)
        for module in head.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / config.steps)))
    generator = torch.Generator().manual_seed(config.seed)
    pos_weight = torch.tensor(config.term_pos_weight)
    target_term = terminated.float()
    for _ in tqdm(range(config.steps), desc="head refit", unit="step", disable=not progress):
        idx = torch.randint(len(inputs), (config.batch_size,), generator=generator)
        out = head(inputs[idx]).float()
        r_loss = reward_loss(out[:, :-1], rewards[idx], bins).mean()
        t_loss = F.binary_cross_entropy_with_logits(out[:, -1], target_term[idx], pos_weight=pos_weight)
        loss = config.reward_weight * r_loss + t_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return head.eval()


@torch.no_grad()
def head_predictions(head: nn.Module, inputs: Tensor, bins: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted rewards and termination logits `(N,)` of `head` on `inputs (N, D)`."""
    out = head(inputs).float()
    return reward_value(out[:, :-1], bins), out[:, -1]
