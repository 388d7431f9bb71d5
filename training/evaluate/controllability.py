"""Controllability: does each action move the dreamt lander the way it moves the real one?

A trial starts from T real context frames of an episode (after `offset` real steps); each of the 4 actions is then
held for S steps, in the dream (a batch of 4 dreams from the same context) and in the real game (the episode's
seed and actions replayed: LunarLander is deterministic given both, so the real branch starts from the very state
the context shows). Both are read the same way, with the lander locator on the frames:

- main engine: vertical signature = mean over steps of (row under main engine - row under no-op); the real game
  gives < 0 (the engine slows the fall, rows grow downwards).
- side engines: rotation signature = mean over steps of the wrapped difference of the lander mask's principal-axis
  angle (second moments of the locator's weights) between the side engine and no-op. In the real game action 1
  (left orientation engine) turns the mask one way (about -60 degrees after 16 steps) and action 3 the other, in
  every one of 30 checked starts; the horizontal drift signature (mean column difference, about -2 / +2 px)
  agrees with it and is reported too.

A dream trial goes "the right way" when its signature has the sign of the real game's from the same start (a
lander lost in the dream counts as wrong). The right rates are over the trials the real game can judge: those
whose real signature is measured and non-zero. Where the real lander is not on the screen (above its top, or the
episode has already ended), nothing says which way the dream should have gone; those trials are left out of the
rates (`per_signature_trials` counts the judged ones, `per_signature_right_rate_all_trials` scores them all).
`real_signature_mean` and `dream_signature_mean` (over the trials where each is measured) say how strongly each
action acts, in the game and in the dream. The spread (mean pairwise distance between the 4 actions' lander
positions after S steps) says how far the trajectories differ between actions, in the dream and in the game.
"""

from __future__ import annotations

import itertools

import numpy as np
from tqdm.auto import tqdm

from oniris_env.bundle import Bundle
from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig
from oniris_env.spec import DEFAULT_SPEC, GameSpec
from training.evaluate.data import RealEpisode
from training.evaluate.frames import centroids
from training.evaluate.rollout import context_at, replay
from training.lander import MIN_LANDER_WEIGHT, lander_weights

NOOP, LEFT, MAIN, RIGHT = 0, 1, 2, 3


def lander_axis_angle(frame: np.ndarray) -> float:
    """Principal-axis angle in degrees, in [-90, 90), of the lander's pixel weights in an `(H, W, 3)` uint8 frame
    (0 = along the columns; positive turns from the column axis towards growing rows); NaN when not found."""
    w = lander_weights(frame).astype(np.float64)
    total = w.sum()
    if total < MIN_LANDER_WEIGHT:
        return float("nan")
    rows, cols = np.mgrid[: w.shape[0], : w.shape[1]]
    mr, mc = (w * rows).sum() / total, (w * cols).sum() / total
    c_rr = (w * (rows - mr) ** 2).sum() / total
    c_cc = (w * (cols - mc) ** 2).sum() / total
    c_rc = (w * (rows - mr) * (cols - mc)).sum() / total
    return float(wrap_angle(0.5 * np.degrees(np.arctan2(2 * c_rc, c_cc - c_rr))))


def wrap_angle(degrees: np.ndarray | float) -> np.ndarray | float:
    """An axis angle difference wrapped into [-90, 90) (an axis has no direction)."""
    return (np.asarray(degrees) + 90.0) % 180.0 - 90.0


def signature(values: np.ndarray, reference: np.ndarray, angle: bool = False) -> float:
    """Mean over steps of `values - reference` (`(S,)` each, NaN where not measured; wrapped for angles), NaN
    when no step has both."""
    d = values - reference
    if angle:
        d = wrap_angle(d)
    d = d[~np.isnan(d)]
    return float(d.mean()) if len(d) else float("nan")


def judged(real: float) -> bool:
    """The real game shows which way an action goes: its signature is measured and non-zero."""
    return bool(np.isfinite(real) and real != 0)


def same_sign(dream: float, real: float) -> bool:
    """A dream trial goes the right way: both signatures measured, the real one non-zero, same sign."""
    return judged(real) and bool(np.isfinite(dream) and np.sign(dream) == np.sign(real))


def real_branches(
    seed: int, prefix: np.ndarray, steps: int, spec: GameSpec = DEFAULT_SPEC
) -> tuple[np.ndarray, np.ndarray]:
    """Replay `prefix` actions in the real game from `seed`, then hold each action for `steps` steps.

    Returns the start frame `(H, W, 3)` uint8 (after the prefix) and the frames `(A, steps, H, W, 3)` uint8 after
    each held step; after a real termination the frame is all zeros (no lander found).
    """
    from oniris_env.real_env import OnirisLunarLanderReal

    env = OnirisLunarLanderReal(action_repeat=spec.action_repeat)
    out = np.zeros((spec.num_actions, steps, *spec.frame_shape), dtype=np.uint8)
    start = None
    for a in range(spec.num_actions):
        obs, _ = env.reset(seed=seed)
        for prev in prefix:
            obs, *_ = env.step(int(prev))
        start = obs
        for t in range(steps):
            obs, _, terminated, truncated, _ = env.step(a)
            out[a, t] = obs
            if terminated or truncated:
                break
    env.close()
    assert start is not None
    return start, out


def _signature(key: str, cents: np.ndarray, angles: np.ndarray) -> float:
    """One trial's signature `key` from centroids `(A, S, 2)` (row, col) and axis angles `(A, S)`."""
    if key == "main":
        return signature(cents[MAIN, :, 0], cents[NOOP, :, 0])
    action = LEFT if key.startswith("left") else RIGHT
    if key.endswith("rot"):
        return signature(angles[action], angles[NOOP], angle=True)
    return signature(cents[action, :, 1], cents[NOOP, :, 1])


def _trajectories(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroids `(A, S, 2)` and axis angles `(A, S)` of `(A, S, H, W, 3)` frames."""
    cents = np.stack([centroids(f) for f in frames])
    angles = np.array([[lander_axis_angle(x) for x in f] for f in frames])
    return cents, angles


def _spread(cents: np.ndarray) -> float:
    """Mean pairwise distance between the actions' centroids `(A, S, 2)` at the last step where all are found
    (NaN if there is none)."""
    all_found = np.flatnonzero(~np.isnan(cents[..., 0]).any(axis=0))
    if not len(all_found):
        return float("nan")
    last = cents[:, all_found[-1]]
    return float(np.mean([np.hypot(*(last[i] - last[j])) for i, j in itertools.combinations(range(len(last)), 2)]))


def controllability(
    bundle: Bundle,
    episodes: list[RealEpisode],
    steps: int,
    offsets: tuple[int, ...],
    seed: int,
    progress: bool = True,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> tuple[dict, dict]:
    """Run all trials; return the JSON-ready metrics and the first trial's trajectories (for the plot)."""
    spec, t_ctx = bundle.spec, bundle.contexts.frames.shape[1]
    trials = [(e, o + t_ctx - 1) for e in episodes for o in offsets if o + t_ctx - 1 < e.length]
    if not trials:
        raise ValueError("no episode is long enough for a controllability trial")
    num_a = spec.num_actions
    starts, reals = [], []
    for e, last in tqdm(trials, desc="controllability (real)", unit="trial", disable=not progress):
        start, real = real_branches(e.seed, e.actions[:last], steps, spec)
        starts.append(start)
        reals.append(real)
    mismatches = sum(not np.array_equal(start, e.frames[last]) for start, (e, last) in zip(starts, trials, strict=True))
    contexts = [context_at(e, last, t_ctx) for e, last in trials]
    # one batch of A dreams per trial, dream (trial i, action a) at row i * A + a, holding action a
    ctx_frames = np.repeat(np.stack([c[0] for c in contexts]), num_a, axis=0)
    ctx_actions = np.repeat(np.stack([c[1] for c in contexts]), num_a, axis=0)
    held = np.tile(np.arange(num_a), len(trials))[:, None].repeat(steps, axis=1)  # (n A, S)
    outs = list(
        tqdm(
            replay(bundle, ctx_frames, ctx_actions, held, seed, sampler=sampler),
            total=steps,
            desc="controllability (dream)",
            unit="step",
            disable=not progress,
        )
    )
    dreams = np.stack([o.frames for o in outs], axis=1).reshape(len(trials), num_a, steps, *spec.frame_shape)

    scores: dict[str, list] = {k: [] for k in ("main", "left_rot", "right_rot", "left_drift", "right_drift")}
    real_scores: dict[str, list] = {k: [] for k in scores}
    dream_scores: dict[str, list] = {k: [] for k in scores}
    spread_real, spread_dream = [], []
    example: dict = {}
    for (e, last), start, real, dream in zip(trials, starts, reals, dreams, strict=True):
        (rc, ra), (dc, da) = _trajectories(real), _trajectories(dream)
        for key in scores:
            s_real, s_dream = _signature(key, rc, ra), _signature(key, dc, da)
            real_scores[key].append(s_real)
            dream_scores[key].append(s_dream)
            scores[key].append(same_sign(s_dream, s_real))
        spread_real.append(_spread(rc))
        spread_dream.append(_spread(dc))
        if not example:
            start_c = np.repeat(centroids(start[None])[None], num_a, 0)  # (A, 1, 2)
            example = {
                "real": np.concatenate([start_c, rc], 1).tolist(),
                "dream": np.concatenate([start_c, dc], 1).tolist(),
                "seed": e.seed,
                "start_frame": last,
            }
    judged_trials = {k: [judged(r) for r in v] for k, v in real_scores.items()}
    rate = {
        k: float(np.mean(np.asarray(v)[judged_trials[k]])) if any(judged_trials[k]) else float("nan")
        for k, v in scores.items()
    }
    metrics = {
        "trials": len(trials),
        "steps": steps,
        "offsets": list(offsets),
        "main_right_rate": rate["main"],
        "side_rotation_right_rate": (rate["left_rot"] + rate["right_rot"]) / 2,
        "side_drift_right_rate": (rate["left_drift"] + rate["right_drift"]) / 2,
        "per_signature_right_rate": rate,
        "per_signature_trials": {k: int(sum(v)) for k, v in judged_trials.items()},
        "per_signature_right_rate_all_trials": {k: float(np.mean(v)) for k, v in scores.items()},
        "real_signature_mean": {k: _finite_mean(v) for k, v in real_scores.items()},
        "dream_signature_mean": {k: _finite_mean(v) for k, v in dream_scores.items()},
        "spread_px_real": _finite_mean(spread_real),
        "spread_px_dream": _finite_mean(spread_dream),
        "spread_trials_real": int(np.isfinite(spread_real).sum()),
        "spread_trials_dream": int(np.isfinite(spread_dream).sum()),
        "real_replay_mismatches": int(mismatches),
    }
    return metrics, example


def _finite_mean(values: list[float]) -> float | None:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None
