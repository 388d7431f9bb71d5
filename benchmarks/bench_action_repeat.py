"""How coarse can an env step be? The heuristic pilot's landing rate and return, and the lander's per-step motion
in pixels, for action_repeat k = 1..4 on the real pixel env.

    python benchmarks/bench_action_repeat.py --episodes 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from gymnasium.envs.box2d.lunar_lander import heuristic

from oniris_env.real_env import OnirisLunarLanderReal
from training.lander import state_to_pixel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 2, 3, 4])
    args = parser.parse_args()
    print("| k | landed | mean return | env steps / episode | median px moved / step | p95 px / step | ms / step |")
    print("|---|---|---|---|---|---|---|")
    for k in args.repeats:
        env = OnirisLunarLanderReal(action_repeat=k)
        returns, landed, lengths, moves, seconds, steps = [], 0, [], [], 0.0, 0
        for ep in range(args.episodes):
            _, info = env.reset(seed=10_000 + ep)
            total, done, n = 0.0, False, 0
            prev = state_to_pixel(info["state"])
            while not done:
                t0 = time.perf_counter()
                _, r, terminated, truncated, info = env.step(int(heuristic(env.game, info["state"])))
                seconds += time.perf_counter() - t0
                steps += 1
                pos = state_to_pixel(info["state"])
                moves.append(np.hypot(pos[0] - prev[0], pos[1] - prev[1]))
                prev, total, n, done = pos, total + r, n + 1, terminated or truncated
            returns.append(total)
            lengths.append(n)
            landed += info.get("outcome") == "landed"
        print(
            f"| {k} | {landed}/{args.episodes} | {np.mean(returns):.1f} | {np.mean(lengths):.0f} | "
            f"{np.median(moves):.2f} | {np.percentile(moves, 95):.2f} | {1000 * seconds / steps:.1f} |"
        )


if __name__ == "__main__":
    main()
