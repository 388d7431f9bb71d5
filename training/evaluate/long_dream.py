"""Long dreams: free rollouts of `steps` steps under two action sources, checked for stability.

Policies: 'random' (uniform actions) and 'pilot', a scripted heuristic-like pilot that sees only the dreamt
frames (the dream has no state): it locates the lander, estimates its velocity from the last two centroids, fires
the main engine when falling faster than `PILOT_MAX_FALL` px/step and steers towards the middle with the side
engines (action 3 moves the real lander right, action 1 left; see `controllability`), else drifts (no-op).
When the dream's termination head ends an episode the dream is reset from the start-context bank, as the env
would do, and the reset is counted (terrain statistics restart with the new episode).

Measured per policy: lander found in >= 95% of frames (next to the same fraction in the real game under the same
policy and number of steps, `real_found_fraction`: the locator misses the lander in real frames too, e.g. when
it is above the top of the screen), NaN/Inf latents (must be none), latent mean / std per
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
) -> dict:
    """Dream `steps` steps under each policy (one batch of 2 dreams); `reference` = (mean, std) of real latents."""
    spec = bundle.spec
    sim = DreamSimulator.from_bundle(bundle, len(POLICIES), sampler=sampler)
    sim.seed(seed)
    rng = np.random.default_rng(seed)
    frames, _ = sim.reset(None, rng)
    pilot = LocatorPilot(spec.frame_width)
    n = len(POLICIES)
    found = np.zeros((n, steps), bool)
    finite = np.ones((n, steps), bool)
    lat_mean, lat_std = np.zeros((n, steps)), np.zeros((n, steps))
    step_change: list[list[float]] = [[] for _ in range(n)]
    first_change: list[list[float]] = [[] for _ in range(n)]
    resets = np.zeros(n, int)
    first, prev = frames.copy(), frames.copy()
    for t in tqdm(range(steps), desc="long dreams", unit="step", disable=not progress):
        actions = np.array([rng.integers(spec.num_actions), pilot.act(prev[1])], dtype=np.int64)
        out = sim.step(actions)
        lat = out.latents.float().cpu().numpy().reshape(n, -1)
        finite[:, t] = np.isfinite(lat).all(axis=1)
        lat_mean[:, t], lat_std[:, t] = lat.mean(axis=1), lat.std(axis=1)
        for i in range(n):
            found[i, t] = lander_centroid(out.frames[i]) is not None
            step_change[i].append(terrain_change(out.frames[i], prev[i]))
            first_change[i].append(terrain_change(out.frames[i], first[i]))
        prev = out.frames
        if out.terminated.any():
            resets += out.terminated
            new, _ = sim.reset(out.terminated, rng)
            prev = prev.copy()
            prev[out.terminated], first[out.terminated] = new, new
            if out.terminated[1]:
                pilot.reset()
    ref_mean, ref_std = reference
    real_found = {name: real_found_fraction(name, steps, seed) for name in POLICIES}
    result = {}
    for i, name in enumerate(POLICIES):
        means, stds = window_stats(lat_mean[i]), window_stats(lat_std[i])
        result[name] = {
            "steps": steps,
            "found_fraction": float(found[i].mean()),
            "real_found_fraction": real_found[name][0],
            "real_resets": real_found[name][1],
            "nonfinite_steps": int((~finite[i]).sum()),
            "resets": int(resets[i]),
            "latent_mean_per_window": means,
            "latent_std_per_window": stds,
            "latent_mean_drift": float(np.max(np.abs(np.asarray(means) - ref_mean))),
            "latent_std_ratio_max_dev": float(np.max(np.abs(np.asarray(stds) / ref_std - 1))),
            "terrain_step_change": float(np.mean(step_change[i])),
            "terrain_change_vs_first": float(np.mean(first_change[i])),
            "terrain_change_vs_first_max_window": max(window_stats(np.asarray(first_change[i]))),
        }
    result["window"] = WINDOW
    result["real_latent_mean"], result["real_latent_std"] = ref_mean, ref_std
    return result
