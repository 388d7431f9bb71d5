"""Long dreams: free rollouts of `steps` steps under two action sources, checked for stability.

Policies: 'random' (uniform actions) and 'pilot', a scripted heuristic-like pilot that sees only the dreamt
frames (the dream has no state): it locates the lander, estimates its velocity from the last two centroids, fires
the main engine when falling faster than `PILOT_MAX_FALL` px/step and steers towards the middle with the side
engines (action 3 moves the real lander right, action 1 left; see `controllability`), else drifts (no-op).
When the dream's termination head ends an episode the dream is reset from the start-context bank, as the env
would do, and the reset is counted (terrain statistics restart with the new episode).

Several dreams run per policy (one batch), and each figure is their mean. Measured per policy: lander found in
>= 95% of frames (next to the same fraction in the real game under the same policy and number of steps,
`real_found_fraction`: the locator misses the lander in real frames too, e.g. when it is above the top of the
screen), NaN/Inf latents (must be none), latent mean / std per
`WINDOW` steps against the real latents' (drift), and terrain stability: mean absolute change (0..255) of the
bottom `TERRAIN_ROWS` rows (the terrain always covers them) between consecutive frames and against the episode's
first frame.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from oniris_env.bundle import Bundle
from oniris_env.real_env import OnirisLunarLanderReal
from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig
from oniris_env.simulator import DreamSimulator
from training.lander import lander_centroid

POLICIES = ("random", "pilot")
WINDOW = 100
TERRAIN_ROWS = 8
PILOT_MAX_FALL = 0.4
PILOT_MARGIN = 8.0


class LocatorPilot:
    """Heuristic-like actions from frames alone (see module docstring); call `reset` at episode starts."""

    def __init__(self, width: int = 96) -> None:
        self.middle = (width - 1) / 2
        self.prev: tuple[float, float] | None = None

    def reset(self) -> None:
        self.prev = None

    def act(self, frame: np.ndarray) -> int:
        c = lander_centroid(frame)
        prev, self.prev = self.prev, c
        if c is None or prev is None:
            return 0
        v_row, v_col = c[0] - prev[0], c[1] - prev[1]
        if v_row > PILOT_MAX_FALL:
            return 2
        if c[1] < self.middle - PILOT_MARGIN and v_col <= 0.3:
            return 3
        if c[1] > self.middle + PILOT_MARGIN and v_col >= -0.3:
            return 1
        return 0


def terrain_change(a: np.ndarray, b: np.ndarray, rows: int = TERRAIN_ROWS) -> float:
    """Mean absolute difference (0..255) of the bottom `rows` rows of two `(H, W, 3)` uint8 frames."""
    return float(np.abs(a[-rows:].astype(np.int16) - b[-rows:].astype(np.int16)).mean())


def window_stats(values: np.ndarray, window: int = WINDOW) -> list[float]:
    """Means of consecutive `window`-long chunks of a 1-d array (the last one may be shorter)."""
    return [float(values[i : i + window].mean()) for i in range(0, len(values), window)]


def real_found_fraction(policy: str, steps: int, seed: int) -> tuple[float, int]:
    """Lander-found fraction and episode count of `steps` real-game steps under a long-dream policy (reset at
    every episode end, as the dreams are)."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    env = OnirisLunarLanderReal()
    rng = np.random.default_rng(seed)
    pilot = LocatorPilot(env.observation_space.shape[1])
    frame, _ = env.reset(seed=int(rng.integers(2**31)))
    found, resets = 0, 0
    for _ in range(steps):
        action = int(rng.integers(env.action_space.n)) if policy == "random" else pilot.act(frame)
        frame, _, terminated, truncated, _ = env.step(action)
        found += lander_centroid(frame) is not None
        if terminated or truncated:
            resets += 1
            frame, _ = env.reset(seed=int(rng.integers(2**31)))
            pilot.reset()
    env.close()
    return found / steps, resets


def long_dreams(
    bundle: Bundle,
    steps: int,
    seed: int,
    reference: tuple[float, float],
    progress: bool = True,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
    dreams: int = 1,
) -> dict:
    """Dream `steps` steps under each policy, `dreams` dreams per policy in one batch; `reference` = (mean, std)
    of real latents. Per policy, every figure is the mean over its dreams (`found_fraction_per_dream` keeps each
    one: a dream that loses the lander loses it for hundreds of steps, so one dream per policy is a noisy figure)."""
    if dreams < 1:
        raise ValueError(f"dreams must be >= 1, got {dreams}")
    spec = bundle.spec
    policy_of = [name for name in POLICIES for _ in range(dreams)]  # dream i runs policy_of[i]
    n = len(policy_of)
    sim = DreamSimulator.from_bundle(bundle, n, sampler=sampler)
    sim.seed(seed)
    rng = np.random.default_rng(seed)
    frames, _ = sim.reset(None, rng)
    pilots = [LocatorPilot(spec.frame_width) for _ in range(n)]
    found = np.zeros((n, steps), bool)
    finite = np.ones((n, steps), bool)
    lat_mean, lat_std = np.zeros((n, steps)), np.zeros((n, steps))
    step_change, first_change = np.zeros((n, steps)), np.zeros((n, steps))
    resets = np.zeros(n, int)
    first, prev = frames.copy(), frames.copy()
    for t in tqdm(range(steps), desc="long dreams", unit="step", disable=not progress):
        random_actions = iter(rng.integers(spec.num_actions, size=dreams))  # one draw per random dream
        actions = np.array(
            [next(random_actions) if policy_of[i] == "random" else pilots[i].act(prev[i]) for i in range(n)],
            dtype=np.int64,
        )
        out = sim.step(actions)
        lat = out.latents_numpy().reshape(n, -1)
        finite[:, t] = np.isfinite(lat).all(axis=1)
        lat_mean[:, t], lat_std[:, t] = lat.mean(axis=1), lat.std(axis=1)
        for i in range(n):
            found[i, t] = lander_centroid(out.frames[i]) is not None
            step_change[i, t] = terrain_change(out.frames[i], prev[i])
            first_change[i, t] = terrain_change(out.frames[i], first[i])
        prev = out.frames
        if out.terminated.any():
            resets += out.terminated
            new, _ = sim.reset(out.terminated, rng)
            prev = prev.copy()
            prev[out.terminated], first[out.terminated] = new, new
            for i in np.flatnonzero(out.terminated):
                pilots[i].reset()
    ref_mean, ref_std = reference
    real_found = {name: real_found_fraction(name, steps, seed) for name in POLICIES}
    result: dict = {}
    for name in POLICIES:
        rows = np.array([p == name for p in policy_of])
        means, stds = window_stats(lat_mean[rows].mean(axis=0)), window_stats(lat_std[rows].mean(axis=0))
        first_by_window = [window_stats(c) for c in first_change[rows]]
        result[name] = {
            "steps": steps,
            "dreams": dreams,
            "found_fraction": float(found[rows].mean()),
            "found_fraction_per_dream": [float(f) for f in found[rows].mean(axis=1)],
            "real_found_fraction": real_found[name][0],
            "real_resets": real_found[name][1],
            "nonfinite_steps": int((~finite[rows]).sum()),
            "resets": float(resets[rows].mean()),
            "latent_mean_per_window": means,
            "latent_std_per_window": stds,
            "latent_mean_drift": float(np.max(np.abs(np.asarray(means) - ref_mean))),
            "latent_std_ratio_max_dev": float(np.max(np.abs(np.asarray(stds) / ref_std - 1))),
            "terrain_step_change": float(step_change[rows].mean()),
            "terrain_change_vs_first": float(first_change[rows].mean()),
            "terrain_change_vs_first_max_window": float(max(max(w) for w in first_by_window)),
        }
    result["window"] = WINDOW
    result["real_latent_mean"], result["real_latent_std"] = ref_mean, ref_std
    return result
