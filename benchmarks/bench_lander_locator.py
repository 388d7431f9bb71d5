"""Accuracy of the colour lander locator against the true state mapped to pixels, on real frames.

    python benchmarks/bench_lander_locator.py --episodes 12
"""

from __future__ import annotations

import argparse

import numpy as np

from oniris_env.real_env import OnirisLunarLanderReal
from training.lander import centroid_error, lander_centroid, state_to_pixel
from training.policies import choose_policy, make_policy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=12)
    args = parser.parse_args()
    env = OnirisLunarLanderReal()
    errors, partial, missed, off_screen, off_screen_none = [], [], 0, 0, 0
    for ep in range(args.episodes):
        rng = np.random.default_rng(ep)
        act = make_policy(choose_policy("mix", rng), rng)
        obs, info = env.reset(seed=900_000 + ep)
        done = False
        while not done:
            found, (row, col) = lander_centroid(obs), state_to_pixel(info["state"])
            if row < -4:  # entirely above the frame
                off_screen += 1
                off_screen_none += found is None
            elif row < 3:  # partly above the top edge (episodes start there)
                partial.append(found is not None)
            elif found is None:
                missed += 1
            else:
                errors.append(centroid_error(found, (row, col)))
            obs, _, term, trunc, info = env.step(act(info["state"]))
            done = term or trunc
    e = np.asarray(errors)
    print(f"fully visible frames: {len(e) + missed}, missed: {missed}, median error {np.median(e):.2f} px, "
          f"p95 {np.percentile(e, 95):.2f} px, max {e.max():.2f} px; partly visible at the top edge: "
          f"{len(partial)}, found in {np.mean(partial):.0%}; off-screen frames: {off_screen}, "
          f"reported None: {off_screen_none}")


if __name__ == "__main__":
    main()
