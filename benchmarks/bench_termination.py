"""The termination head on validation episodes, against the dream's termination threshold.

Episodes: the held-out episodes of a training collection (the `val` split of `EpisodeWindows`: no episode the
models trained on, and none of `oniris-env evaluate`'s fresh episodes, so choosing a threshold here does not tune
on the evaluation). Two sources of termination logits:

- `--source real` (default): every real frame is committed to the world model's cache as a generated frame would
  be, and the head's first firing is compared with the real end (`training.evaluate.teacher_forced`: the dynamics
  play no part);
- `--source dreams`: terminal-anchored dreams, as `oniris-env evaluate` runs them on its fresh episodes (the last
  `--steps` transitions of every long-enough episode replayed in the dream from the real frames before them,
  `training.evaluate.open_loop.terminal_replays`): the head on dreamt frames, which is what the env runs.

Prints event precision / recall (+-2 steps) and recall by outcome for several thresholds, and the head's
per-step precision / recall, as one Markdown table (one dream per episode serves every threshold: the logits are
kept); then, per outcome, when the head first fires relative to the real end.

    python benchmarks/bench_termination.py --data data/real --weights oniris_env/weights --threads 2
    python benchmarks/bench_termination.py --data data/real --source dreams --threads 2
    python benchmarks/bench_termination.py --data data/real --weights runs/bundle --thresholds 0.3 0.5 0.7

Not a test: the figures depend on the weights and on the episodes.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from oniris_env.bundle import load_bundle
from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD, threshold_logit
from training.evaluate.config import EvalConfig
from training.evaluate.data import RealEpisode, validation_episodes
from training.evaluate.open_loop import Replays, terminal_replays
from training.evaluate.reward_term import first_true, termination_by_outcome, termination_events
from training.evaluate.teacher_forced import teacher_forced


def head_logits(bundle, episodes: list[RealEpisode], source: str, steps: int, seed: int) -> Replays:
    """Termination logits and real ends of `episodes` from `source` ('real' frames or terminal-anchored
    'dreams'), as `Replays`."""
    if source == "real":
        return teacher_forced(bundle, episodes, seed)
    return terminal_replays(bundle, episodes, steps, seed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder written by `oniris-env collect`")
    p.add_argument("--weights", default=None, help="bundle directory (default: shipped)")
    p.add_argument("--source", choices=("real", "dreams"), default="real", help="frames the head reads")
    p.add_argument("--steps", type=int, default=EvalConfig().terminal_steps, help="dreams: transitions replayed")
    p.add_argument("--val-fraction", type=float, default=0.1, help="the split the models were trained with")
    p.add_argument("--episodes", type=int, default=None, help="use only the first N validation episodes")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    p.add_argument("--tolerance", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_bundle(args.weights)
    episodes = validation_episodes(args.data, args.val_fraction, args.episodes)
    rep = head_logits(bundle, episodes, args.source, args.steps, args.seed)
    logits, real, outcomes = rep.pred_term_logits, rep.real_terminated, rep.outcomes
    counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    what = "real frames" if args.source == "real" else f"terminal-anchored dreams of the last {args.steps} steps"
    print(
        f"# bench_termination {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}, weights "
        f"{bundle.path}, {what}, {len(logits)} validation episodes of {args.data} {counts}, tolerance "
        f"+-{args.tolerance} steps\n"
    )
    names = sorted(counts)
    print(
        "| threshold | event precision | event recall | TP / FP / FN | "
        + " | ".join(f"recall {n}" for n in names)
        + " | step precision | step recall |"
    )
    print("|---|---|---|---|" + "---|" * len(names) + "---|---|")
    steps_real = np.concatenate(real)
    for threshold in args.thresholds:
        cut = threshold_logit(threshold)
        pred = [lg > cut for lg in logits]
        ev = termination_events(pred, real, args.tolerance)
        by = termination_by_outcome(pred, real, outcomes, args.tolerance)
        flat = np.concatenate(pred)
        step_p = (flat & steps_real).sum() / max(flat.sum(), 1)
        step_r = (flat & steps_real).sum() / max(steps_real.sum(), 1)
        cells = [f"{by[n]['recall']:.2f}" if n in by else "n/a" for n in names]
        print(
            f"| {threshold:g} | {ev['precision'] or 0:.2f} | {ev['recall'] or 0:.2f} | "
            f"{ev['true_pos']} / {ev['false_pos']} / {ev['false_neg']} | "
            + " | ".join(cells)
            + f" | {step_p:.2f} | {step_r:.2f} |"
        )
    print(
        "\nWhen the head first fires, relative to the real end (steps; < 0: early), at threshold "
        f"{DEFAULT_TERMINATION_THRESHOLD:g}:\n"
    )
    print("| outcome | ends | never fires | median | p10 | p90 | within +-tolerance |")
    print("|---|---|---|---|---|---|---|")
    cut = threshold_logit(DEFAULT_TERMINATION_THRESHOLD)
    for name in names:
        offsets, never = [], 0
        for lg, r, o in zip(logits, real, outcomes, strict=True):
            end = first_true(r)
            if o != name or end is None:
                continue
            fired = first_true(lg > cut)
            if fired is not None:
                offsets.append(fired - end)
            else:
                never += 1
        if offsets or never:
            x = np.asarray(offsets) if offsets else np.zeros(0)
            q = np.percentile(x, [50, 10, 90]) if len(x) else [float("nan")] * 3
            within = int((np.abs(x) <= args.tolerance).sum())
            print(f"| {name} | {len(x) + never} | {never} | {q[0]:g} | {q[1]:g} | {q[2]:g} | {within} |")


if __name__ == "__main__":
    main()
