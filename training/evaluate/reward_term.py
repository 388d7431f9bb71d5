"""Reward and termination of the dream against the real episode, on aligned replays (`open_loop.Replays`).

- Reward: MAE and Pearson correlation over all aligned steps; return error per replay = |sum of predicted rewards -
  sum of real rewards| over the replayed steps (the context's rewards are not predicted, so not counted).
- Termination as events: a replay's real end is its first real `terminated` step, its predicted end the first
  step where the dream's termination head fires (the env ends the episode there). A predicted end within
  `tolerance` steps of the real end is a true positive; any other predicted end a false positive; a real end
  without one a false negative. Timeouts are not terminations.
- Termination by outcome: the recall above split by how the real episode ended. LunarLander ends a crash (or a
  flight off the side) on the step of contact, but a landing only when Box2D puts the resting lander to sleep,
  which in 90% of the training landings comes 18 or more env steps after the lander last moved by 0.1 px per step.
  The frames still show it coming: the resting lander's anti-aliased edges keep changing until 11-14 steps before
  the end, inside a 16-frame window in 99% of landings (12 frames: 32%; `benchmarks/bench_landing_end.py`).
- Sign at terminal steps: LunarLander ends with -100 (crash, flying off) or +100 (landing). For every real end,
  the predicted reward of largest magnitude within `tolerance` steps of it must have the real reward's sign.
"""

from __future__ import annotations

import numpy as np

from training.evaluate.open_loop import Replays


def first_true(flags: np.ndarray) -> int | None:
    """Index of the first True of a 1-d bool array, or None."""
    idx = np.flatnonzero(flags)
    return int(idx[0]) if len(idx) else None


def reward_stats(pred: list[np.ndarray], real: list[np.ndarray]) -> dict[str, float | int | None]:
    """mae and corr over all aligned steps of all replays, and the per-replay return error (mean, median)."""
    p = np.concatenate(pred).astype(np.float64) if pred else np.zeros(0)
    r = np.concatenate(real).astype(np.float64) if real else np.zeros(0)
    if p.shape != r.shape:
        raise ValueError(f"predicted and real rewards do not align: {p.shape} vs {r.shape}")
    corr = float(np.corrcoef(p, r)[0, 1]) if len(p) > 1 and p.std() > 0 and r.std() > 0 else None
    ret_err = np.abs([a.sum(dtype=np.float64) - b.sum(dtype=np.float64) for a, b in zip(pred, real, strict=True)])
    return {
        "steps": len(p),
        "mae": float(np.abs(p - r).mean()) if len(p) else None,
        "corr": corr,
        "return_abs_err_mean": float(ret_err.mean()) if len(ret_err) else None,
        "return_abs_err_median": float(np.median(ret_err)) if len(ret_err) else None,
        "replays": len(pred),
    }


def termination_events(pred: list[np.ndarray], real: list[np.ndarray], tolerance: int) -> dict[str, float | int | None]:
    """Event precision / recall of predicted episode ends (see module docstring)."""
    tp = fp = fn = 0
    for p, r in zip(pred, real, strict=True):
        p_end, r_end = first_true(p), first_true(r)
        hit = p_end is not None and r_end is not None and abs(p_end - r_end) <= tolerance
        tp += hit
        fp += p_end is not None and not hit
        fn += r_end is not None and not hit
    return {
        "true_pos": tp,
        "false_pos": fp,
        "false_neg": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "tolerance_steps": tolerance,
    }


def termination_by_outcome(
    pred: list[np.ndarray], real: list[np.ndarray], outcomes: list[str], tolerance: int
) -> dict[str, dict[str, float | int | None]]:
    """Per real outcome ('crashed', 'landed', ...): real ends, those matched within `tolerance`, recall."""
    out: dict[str, dict[str, float | int | None]] = {}
    for p, r, outcome in zip(pred, real, outcomes, strict=True):
        r_end = first_true(r)
        if r_end is None:
            continue
        p_end = first_true(p)
        row = out.setdefault(outcome, {"ends": 0, "matched": 0})
        row["ends"] += 1
        row["matched"] += p_end is not None and abs(p_end - r_end) <= tolerance
    for row in out.values():
        row["recall"] = row["matched"] / row["ends"]
    return dict(sorted(out.items()))


def terminal_sign_agreement(
    pred_rewards: list[np.ndarray], real_rewards: list[np.ndarray], real_terminated: list[np.ndarray], tolerance: int
) -> dict[str, float | int | None]:
    """Fraction of real episode ends where the dream's strongest reward near the end has the real sign."""
    agree = total = 0
    for p, r, term in zip(pred_rewards, real_rewards, real_terminated, strict=True):
        end = first_true(term)
        if end is None:
            continue
        window = p[max(end - tolerance, 0) : end + tolerance + 1]
        strongest = window[np.argmax(np.abs(window))]
        agree += bool(np.sign(strongest) == np.sign(r[end]))
        total += 1
    return {"agreement": agree / total if total else None, "terminals": total}


def reward_termination(replays: dict[str, Replays], tolerance: int) -> dict[str, dict]:
    """All reward / termination figures of each named set of replays (e.g. the from-start open-loop replays, the
    terminal-anchored ones and the teacher-forced heads)."""
    out = {}
    for name, rep in replays.items():
        out[name] = {
            "reward": reward_stats(rep.pred_rewards, rep.real_rewards),
            "termination": termination_events(rep.pred_terminated, rep.real_terminated, tolerance),
            "termination_by_outcome": termination_by_outcome(
                rep.pred_terminated, rep.real_terminated, rep.outcomes, tolerance
            ),
            "terminal_sign": terminal_sign_agreement(
                rep.pred_rewards, rep.real_rewards, rep.real_terminated, tolerance
            ),
        }
    return out
