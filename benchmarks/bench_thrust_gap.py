"""The model error a dream-trained agent exploits: sustained main-engine thrust, real game against dream.

From the same real start (the first 4 frames of a real episode, then the same actions in both worlds), the main
engine is fired with probability p at every step for 25 steps (the dream agents fire it 80-90% of the time). The
table gives the lander's centroid row (pixels from the top of the 64 x 96 frame; larger = lower) after k steps,
averaged over the episodes where it is still visible, and how many landers left the view.

    python benchmarks/bench_thrust_gap.py --episodes 12

    python benchmarks/bench_thrust_gap.py --episodes 12 --weights runs/loop/iter1/bundle   # another model

Not a test: it measures the shipped world model (or `--weights`).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from oniris_env.dream_config import DreamConfig
from oniris_env.real_env import OnirisLunarLanderReal
from oniris_env.sampler import SamplerConfig
from oniris_env.vector import DreamEpisodes
from training.lander import lander_centroid

CONTEXT, STEPS, PROBES = 4, 25, (5, 10, 15, 20, 25)


def rows(frames: list[np.ndarray]) -> list[float]:
    return [np.nan if (c := lander_centroid(f)) is None else c[0] for f in frames]


def run(p_main: float, episodes: int, denoise_steps: int, seed: int, weights: str | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real_rows, dream_rows = [], []
    dreams = DreamEpisodes(1, DreamConfig(weights, "pixels", "cpu", SamplerConfig(num_steps=denoise_steps),
                                      termination_threshold=1 - 1e-9))
    for e in range(episodes):
        env = OnirisLunarLanderReal()
        frame, _ = env.reset(seed=seed + e)
        actions = [0] * (CONTEXT - 1) + [2 if rng.random() < p_main else 0 for _ in range(STEPS)]
        frames = [frame]
        for a in actions:
            frame, *_ = env.step(a)
            frames.append(frame)
        dreams.seed(seed + e)
        dreams.reset(None, np.stack(frames[:CONTEXT])[None], np.array([actions[: CONTEXT - 1]]))
        dreamt = [dreams.step(np.array([a])).final_obs[0] for a in actions[CONTEXT - 1 :]]
        real_rows.append(rows(frames[CONTEXT:]))
        dream_rows.append(rows(dreamt))
    return np.array(real_rows), np.array(dream_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--denoise-steps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", help="weights bundle (default: the shipped one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cols = " | ".join(f"k = {k}" for k in PROBES)
    print(f"| P(main) | world | {cols} | left the view by k = 25 |")
    print("|---|---|" + "---|" * len(PROBES) + "---|")
    for p in (1.0, 0.85, 0.7, 0.5):
        real, dream = run(p, args.episodes, args.denoise_steps, args.seed, args.weights)
        for name, r in (("real", real), ("dream", dream)):
            with np.errstate(all="ignore"):
                means = np.nanmean(r[:, [k - 1 for k in PROBES]], 0)
            lost = int(np.isnan(r[:, -1]).sum())
            print(f"| {p} | {name} | " + " | ".join(f"{m:.1f}" for m in means) + f" | {lost} of {len(r)} |")


if __name__ == "__main__":
    main()
