"""How a refit is judged: event precision / recall of the episode ends on held-out episodes, as `oniris-env
evaluate` scores them, before and after the refit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor, nn

from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD, threshold_logit
from training.evaluate.reward_term import termination_by_outcome, termination_events
from training.heads.episodes import RealLatentEpisode, dream_segment
from training.heads.fit import head_predictions
from training.heads.record import HeadTrace


def termination_report(
    logits: list[np.ndarray], episodes: list[RealLatentEpisode], tolerance: int, threshold_logit: float
) -> dict:
    """Event precision / recall of the episode ends the logits predict (first logit above `threshold_logit`),
    overall and by the episodes' outcomes, as `oniris-env evaluate` scores them."""
    pred = [lg > threshold_logit for lg in logits]
    real = [e.terminated for e in episodes]
    return {
        "events": termination_events(pred, real, tolerance),
        "by_outcome": termination_by_outcome(pred, real, [e.outcome for e in episodes], tolerance),
    }


def held_out_report(
    head: nn.Module,
    bins: Tensor,
    episodes: list[RealLatentEpisode],
    val_idx: list[int],
    real: list[HeadTrace],
    dreams: dict[int, list[HeadTrace | None]],
    dream_steps: int,
    tolerance: int,
) -> dict:
    """The held-out episodes' scores before (the recorded outputs of the bundle's heads) and after (`head`) the
    refit: termination events on real frames and, with dreams ending at the episode end (`dreams[0]`), in those
    terminal-anchored dreams as `oniris-env evaluate` runs them; reward MAE on real frames."""
    cut = threshold_logit(DEFAULT_TERMINATION_THRESHOLD)
    val_eps = [episodes[i] for i in val_idx]
    new = [head_predictions(head, real[i].head_inputs, bins) for i in val_idx]
    real_r = np.concatenate([e.rewards for e in val_eps])
    held_out = {
        "real frames": {
            "before": termination_report([real[i].term_logits.numpy() for i in val_idx], val_eps, tolerance, cut),
            "after": termination_report([lg.numpy() for _, lg in new], val_eps, tolerance, cut),
        },
        "reward MAE, real frames": {
            "before": float(np.abs(torch.cat([real[i].rewards for i in val_idx]).numpy() - real_r).mean()),
            "after": float(np.abs(torch.cat([r for r, _ in new]).numpy() - real_r).mean()),
        },
    }
    if 0 in dreams:
        idx = [i for i in val_idx if dreams[0][i] is not None]
        segs = [replace(episodes[i], terminated=dream_segment(episodes[i], dream_steps, 0)[1]) for i in idx]
        held_out["terminal-anchored dreams"] = {
            "before": termination_report([dreams[0][i].term_logits.numpy() for i in idx], segs, tolerance, cut),
            "after": termination_report(
                [head_predictions(head, dreams[0][i].head_inputs, bins)[1].numpy() for i in idx],
                segs,
                tolerance,
                cut,
            ),
        }
    return held_out
