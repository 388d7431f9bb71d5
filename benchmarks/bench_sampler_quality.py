"""Sampler quality against speed on a trained bundle: the open-loop part of `oniris-env evaluate` (real context,
real actions replayed, lander-centroid error vs the real frames) for several `SamplerConfig`s on the same fresh
real episodes, next to each sampler's dream steps/s. This is how the env's default sampler is chosen.

    python benchmarks/bench_sampler_quality.py --weights oniris_env/weights --episodes 16 --threads 2
    python benchmarks/bench_sampler_quality.py --weights runs/bundle --samplers euler:2 euler:3 heun:3 euler:3:0.05

A sampler is `method:steps[:sigma_min[:sigma_max]]`. Prints one Markdown table (paste into docs/RESULTS.md).
Not a test: the numbers depend on the weights, the episodes and, for speed, on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import torch

from oniris_env.bundle import load_bundle
from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig
from training.evaluate.config import EVAL_BASE_SEED
from training.evaluate.cost import dream_steps_per_s
from training.evaluate.data import eval_seeds, record_episodes
from training.evaluate.open_loop import open_loop

HORIZONS = (1, 8, 16, 32)


def parse_sampler(text: str) -> SamplerConfig:
    """`euler:3`, `heun:2:0.05` or `euler:4:0.002:10` -> a `SamplerConfig` (other fields: the default's)."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise argparse.ArgumentTypeError(f"sampler {text!r}: expected method:steps[:sigma_min[:sigma_max]]")
    fields: dict = {"method": parts[0], "num_steps": int(parts[1])}
    if len(parts) > 2:
        fields["sigma_min"] = float(parts[2])
    if len(parts) > 3:
        fields["sigma_max"] = float(parts[3])
    return replace(DEFAULT_SAMPLER, **fields)


def label(s: SamplerConfig) -> str:
    return f"{s.method} x {s.num_steps}, sigma {s.sigma_max:g} -> {s.sigma_min:g}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, help="bundle directory (default: shipped)")
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--max-steps", type=int, default=40, help="open-loop steps replayed per episode")
    p.add_argument(
        "--samplers",
        nargs="+",
        type=parse_sampler,
        default=[parse_sampler(s) for s in ("euler:2", "euler:3", "euler:4", "heun:2", "heun:3")],
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--speed-steps", type=int, default=20)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_bundle(args.weights)
    episodes = record_episodes(eval_seeds(EVAL_BASE_SEED, args.episodes), bundle.spec, progress=False)
    print(
        f"# bench_sampler_quality {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {torch.get_num_threads()} threads, "
        f"load {os.getloadavg()[0]:.1f}, weights {bundle.path}, {len(episodes)} episodes, "
        f"<= {args.max_steps} steps each\n"
    )
    head = " | ".join(f"h={h} err / found" for h in HORIZONS)
    print(f"| sampler | NFE | {head} | B=1 pixels steps/s | B=16 latent steps/s | s |")
    print("|---|---|" + "---|" * len(HORIZONS) + "---|---|---|")
    for sampler in args.samplers:
        start = time.perf_counter()
        result = open_loop(bundle, episodes, HORIZONS, 0, args.max_steps, 0, 0, False, sampler)
        cells = []
        for h in HORIZONS:
            dream = result.metrics["horizons"][str(h)]["dream"]
            err, found = dream["centroid_err_median_lost_inf"], dream["found_rate"]
            cells.append(f"{'n/a' if err is None else f'{err:.2f}'} / {np.nan if found is None else found:.2f}")
        b1 = dream_steps_per_s(bundle, 1, True, args.speed_steps, 0, sampler)
        b16 = dream_steps_per_s(bundle, 16, False, args.speed_steps, 0, sampler)
        print(
            f"| {label(sampler)} | {sampler.model_calls} | {' | '.join(cells)} | {b1:.1f} | {b16:.1f} | "
            f"{time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
