"""Controllability of the dream on validation episodes: does each held action move the lander as in the game?

`oniris-env evaluate`'s controllability trials (`training.evaluate.controllability`: from real context frames,
each of the 4 actions held for `--steps` steps in the dream and in the real game, read by the lander locator), run
on the held-out episodes of a training collection instead of the evaluation's fresh episodes, so that a change of
data or recipe can be judged without looking at the evaluation. Prints, per signature, the dream's right rate over
the judged trials and the mean signature in the game and in the dream (how strongly the action acts).

    python benchmarks/bench_controllability.py --data data/real --episodes 40 --threads 2
    python benchmarks/bench_controllability.py --data data/real --weights runs/bundle --episodes 40
    python benchmarks/bench_controllability.py --data data/real --episodes 0 --picture docs/side_engine_hold.png

`--picture PATH` also draws one trial (validation episode 3, 24 steps in): rows real / dream with the left
engine held, then real / dream with the right engine, every third step from the second (top 48 rows, x2).

Not a test: the figures depend on the weights and on the episodes.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oniris_env.bundle import Bundle, load_bundle
from oniris_env.sampler import SamplerConfig
from training.evaluate.config import EvalConfig
from training.evaluate.controllability import LEFT, RIGHT, controllability, real_branches
from training.evaluate.data import RealEpisode, validation_episodes
from training.evaluate.rollout import context_at, replay


def hold_picture(bundle: Bundle, episode: RealEpisode, offset: int, steps: int, seed: int, path: Path) -> None:
    """Real and dreamt frames of one trial with the side engines held (see module docstring)."""
    t_ctx, num_a = bundle.contexts.frames.shape[1], bundle.spec.num_actions
    last = offset + t_ctx - 1
    _, real = real_branches(episode.seed, episode.actions[:last], steps, bundle.spec)
    frames, actions = context_at(episode, last, t_ctx)
    held = np.repeat(np.arange(num_a)[:, None], steps, axis=1)
    outs = replay(bundle, np.repeat(frames[None], num_a, 0), np.repeat(actions[None], num_a, 0), held, seed)
    dream = np.stack([o.frames for o in outs], axis=1)
    rows = [np.concatenate(list(x[a, 1::3, :48]), axis=1) for a in (LEFT, RIGHT) for x in (real, dream)]
    img = np.concatenate([np.pad(r, ((0, 2), (0, 0), (0, 0)), constant_values=128) for r in rows])
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(path, optimize=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder written by `oniris-env collect`")
    p.add_argument("--weights", default=None, help="bundle directory (default: shipped)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="the split the models were trained with")
    p.add_argument("--episodes", type=int, default=40, help="the first N validation episodes (manifest order)")
    p.add_argument("--steps", type=int, default=EvalConfig().control_steps, help="steps each action is held")
    p.add_argument("--offsets", type=int, nargs="+", default=list(EvalConfig().control_offsets))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--picture", type=Path, default=None, help="also draw one trial into this PNG")
    p.add_argument("--guidance", type=float, default=0.0, help="the sampler's action guidance weight")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_bundle(args.weights)
    if args.picture:
        episode = validation_episodes(args.data, args.val_fraction, 4)[3]
        hold_picture(bundle, episode, 24, args.steps, args.seed, args.picture)
        print(f"wrote {args.picture} (episode seed {episode.seed})")
    if args.episodes < 1:
        return
    episodes = validation_episodes(args.data, args.val_fraction, args.episodes)
    started = time.perf_counter()
    sampler = SamplerConfig(action_guidance=args.guidance)
    metrics, _ = controllability(
        bundle, episodes, args.steps, tuple(args.offsets), args.seed, progress=False, sampler=sampler
    )
    print(
        f"# bench_controllability {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}, weights "
        f"{bundle.path}, {len(episodes)} validation episodes of {args.data}, {metrics['trials']} trials, actions "
        f"held {args.steps} steps, {time.perf_counter() - started:.0f} s\n"
    )
    print("| signature | dream right rate | judged trials | real mean signature | dream mean signature |")
    print("|---|---|---|---|---|")
    for key, rate in metrics["per_signature_right_rate"].items():
        real, dream = metrics["real_signature_mean"][key], metrics["dream_signature_mean"][key]
        print(
            f"| {key} | {rate:.2f} | {metrics['per_signature_trials'][key]} | "
            f"{real if real is None else f'{real:.2f}'} | {dream if dream is None else f'{dream:.2f}'} |"
        )
    print(
        f"\nmain {metrics['main_right_rate']:.3f}, side rotation {metrics['side_rotation_right_rate']:.3f}, side drift "
        f"{metrics['side_drift_right_rate']:.3f}; spread dream / real {metrics['spread_px_dream']:.1f} / "
        f"{metrics['spread_px_real']:.1f} px; real replay mismatches {metrics['real_replay_mismatches']}"
    )


if __name__ == "__main__":
    main()
