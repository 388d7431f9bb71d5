"""Open loop: start the dream from real context frames, replay the real actions, compare with the real frames.

Alignment. With a context of T real frames `frames[0 .. T-1]`, dream step k (k = 1, 2, ...) takes the real action
`actions[T - 2 + k]` and is compared with the real frame `frames[T - 1 + k]`: horizon h is h env steps after the
last context frame. An episode of L transitions reaches horizons h <= L - T + 1; shorter ones do not count at h
(each horizon reports its number of pairs). The baseline "repeat the last real frame" predicts `frames[T - 1]` at
every horizon.

The same replays give per-step predicted rewards and terminations (`Replays`), judged by `reward_term`. The
terminal-anchored replays start K steps before the end of every episode, so that the termination head is tested
at short horizon, where the dream can still be expected to know that the lander is about to touch down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from oniris_env.bundle import Bundle
from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig
from training.evaluate.data import RealEpisode
from training.evaluate.frames import PairStats, centroids
from training.evaluate.rollout import context_at, replay


@dataclass
class Replays:
    """Aligned per-step outcomes of n replays (one array of its own length per replay)."""

    pred_rewards: list[np.ndarray] = field(default_factory=list)
    real_rewards: list[np.ndarray] = field(default_factory=list)
    pred_terminated: list[np.ndarray] = field(default_factory=list)
    pred_term_logits: list[np.ndarray] = field(default_factory=list)
    """The termination logits behind `pred_terminated` (to judge other thresholds without dreaming again)."""
    real_terminated: list[np.ndarray] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    """How each replayed real episode ended ('crashed', 'landed', 'flew_off', 'timeout')."""


@dataclass
class OpenLoopResult:
    metrics: dict
    """JSON-ready: per horizon the dream's and the baseline's `PairStats.summary`."""
    curve: dict[str, list]
    """Per step 1..max(horizons): median centroid error of the dream and of the baseline, and found rate."""
    replays: Replays
    video: list[tuple[np.ndarray, np.ndarray]]
    """For the first shown episodes: real and dream frames `(N, H, W, 3)` uint8 of the first N steps."""


def aligned_steps(length: int, context_len: int, cap: int | None = None) -> int:
    """Dream steps of an open-loop replay of an episode of `length` transitions after `context_len` frames."""
    n = max(length - (context_len - 1), 0)
    return n if cap is None else min(n, cap)


def horizon_pairs(lengths: list[int], context_len: int, horizon: int) -> list[tuple[int, int]]:
    """(episode, real frame index) of every pair at `horizon`: episodes long enough, frame `T - 1 + horizon`."""
    return [(i, context_len - 1 + horizon) for i, n in enumerate(lengths) if aligned_steps(n, context_len) >= horizon]


def open_loop(
    bundle: Bundle,
    episodes: list[RealEpisode],
    horizons: tuple[int, ...],
    seed: int,
    cap: int | None = None,
    video_episodes: int = 2,
    video_steps: int = 128,
    progress: bool = True,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> OpenLoopResult:
    """Replay every episode in the dream from its first T frames (T = the bank's context length), in one batch."""
    t_ctx = bundle.contexts.frames.shape[1]
    eps = [e for e in episodes if aligned_steps(e.length, t_ctx) >= 1]
    if not eps:
        raise ValueError(f"no episode is longer than the {t_ctx}-frame context")
    steps = [aligned_steps(e.length, t_ctx, cap) for e in eps]
    n, total = len(eps), max(steps)
    contexts = [context_at(e, t_ctx - 1, t_ctx) for e in eps]
    actions = np.zeros((n, total), dtype=np.int64)  # padded with no-op after an episode's end (ignored)
    for i, e in enumerate(eps):
        actions[i, : steps[i]] = e.actions[t_ctx - 1 : t_ctx - 1 + steps[i]]
    real_c = [centroids(e.frames) for e in eps]  # (L + 1, 2) each

    stats = {h: (PairStats(), PairStats()) for h in horizons}  # (dream, baseline)
    curve_len = min(max(horizons), total)
    curve = {
        "step": list(range(1, curve_len + 1)),
        "dream_err_median": [],
        "baseline_err_median": [],
        "dream_found_rate": [],
    }
    pred_r, pred_l = np.zeros((n, total), np.float32), np.zeros((n, total), np.float32)
    pred_t = np.zeros((n, total), bool)
    shown = min(video_episodes, n)
    video_dream: list[list[np.ndarray]] = [[] for _ in range(shown)]
    rollout = replay(
        bundle, np.stack([c[0] for c in contexts]), np.stack([c[1] for c in contexts]), actions, seed, sampler=sampler
    )
    for s, out in enumerate(tqdm(rollout, total=total, desc="open loop", unit="step", disable=not progress)):
        k = s + 1
        alive = [i for i in range(n) if steps[i] >= k]
        pred_r[:, s], pred_t[:, s], pred_l[:, s] = out.rewards, out.terminated, out.term_logits
        for i in range(shown):
            if k <= min(video_steps, steps[i]):
                video_dream[i].append(out.frames[i])
        if k in stats:
            real = np.stack([eps[i].frames[t_ctx - 1 + k] for i in alive])
            stats[k][0].add(real, out.frames[alive])
            stats[k][1].add(real, np.stack([eps[i].frames[t_ctx - 1] for i in alive]))
        if k <= curve_len:
            dream_c = centroids(out.frames[alive])
            real_k = np.stack([real_c[i][t_ctx - 1 + k] for i in alive])
            base = np.stack([real_c[i][t_ctx - 1] for i in alive])
            curve["dream_err_median"].append(_nanmedian(np.hypot(*(dream_c - real_k).T)))
            curve["baseline_err_median"].append(_nanmedian(np.hypot(*(base - real_k).T)))
            found_real = ~np.isnan(real_k[:, 0])
            curve["dream_found_rate"].append(
                float((~np.isnan(dream_c[found_real, 0])).mean()) if found_real.any() else None
            )

    replays = Replays()
    for i, e in enumerate(eps):
        sl = slice(t_ctx - 1, t_ctx - 1 + steps[i])
        replays.pred_rewards.append(pred_r[i, : steps[i]])
        replays.pred_terminated.append(pred_t[i, : steps[i]])
        replays.pred_term_logits.append(pred_l[i, : steps[i]])
        replays.real_rewards.append(e.rewards[sl])
        replays.real_terminated.append(e.terminated[sl])
        replays.outcomes.append(e.outcome)
    metrics = {
        "context_frames": t_ctx,
        "episodes": n,
        "steps_replayed": int(sum(steps)),
        "horizons": {str(h): {"dream": d.summary(), "baseline": b.summary()} for h, (d, b) in stats.items()},
    }
    video = [
        (eps[i].frames[t_ctx : t_ctx + len(video_dream[i])], np.stack(video_dream[i]))
        for i in range(shown)
        if video_dream[i]
    ]
    return OpenLoopResult(metrics, curve, replays, video)


def terminal_replays(
    bundle: Bundle,
    episodes: list[RealEpisode],
    steps: int,
    seed: int,
    progress: bool = True,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> Replays:
    """Replay the last `steps` transitions of every long-enough episode from the T real frames before them
    (latents only: rewards and terminations, no frames)."""
    t_ctx = bundle.contexts.frames.shape[1]
    eps = [e for e in episodes if e.length >= steps + t_ctx - 1]
    replays = Replays()
    if not eps:
        return replays
    contexts = [context_at(e, e.length - steps, t_ctx) for e in eps]
    actions = np.stack([e.actions[e.length - steps :] for e in eps])
    outs = list(
        tqdm(
            replay(
                bundle,
                np.stack([c[0] for c in contexts]),
                np.stack([c[1] for c in contexts]),
                actions,
                seed,
                decode=False,
                sampler=sampler,
            ),
            total=steps,
            desc="terminal replays",
            unit="step",
            disable=not progress,
        )
    )
    pred_r = np.stack([o.rewards for o in outs], axis=1)  # (n, steps)
    pred_t = np.stack([o.terminated for o in outs], axis=1)
    pred_l = np.stack([o.term_logits for o in outs], axis=1)
    for i, e in enumerate(eps):
        replays.pred_rewards.append(pred_r[i])
        replays.pred_terminated.append(pred_t[i])
        replays.pred_term_logits.append(pred_l[i])
        replays.real_rewards.append(e.rewards[e.length - steps :])
        replays.real_terminated.append(e.terminated[e.length - steps :])
        replays.outcomes.append(e.outcome)
    return replays


def _nanmedian(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(np.median(x)) if len(x) else None
