"""What a head refit on the frozen trunk gains, by what the heads learn from: how many episodes, real frames or
dreamt ones, and the termination pos_weight (and, as an experiment, a head that reads the last K frames).

Reads the head inputs an `oniris-env train heads` run recorded (`RUN/head_inputs_real.pt`, `..._dream0.pt`,
`..._dream16.pt`: every real frame, and the dreams of each episode's last 16 transitions and of the 16 before),
fits one head per row with the `default` refit settings, and scores on the held-out episodes (split by seed):

- terminal-anchored dreams: event precision / recall (+-2 steps, threshold 0.5), recall by outcome: what
  `oniris-env evaluate` scores and what the env runs;
- earlier dreams: the fraction of the 16-transition dreams ending 16 transitions before the real end in which
  the head fires at all (the real episode does not end there);
- real frames: event precision / recall over whole episodes.

    oniris-env train heads --latents data/latents800 --latents data/term_latents --out runs/heads
    python benchmarks/bench_head_refit.py --run runs/heads --latents data/latents800 --latents data/term_latents \\
        --first 800 --pos-weights 3 10 30 --temporal 16 --threads 2

Not a test: the figures depend on the weights and on the episodes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oniris_env.world_model import WorldModel, WorldModelConfig
from oniris_env.world_model.heads import reward_bins
from training.world_model.head_refit import (
    HeadRefitConfig,
    dream_segment,
    fit_head,
    head_predictions,
    load_latent_episodes,
    read_traces,
    split_episodes,
    termination_report,
)

STEPS = HeadRefitConfig().dream_steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="an `oniris-env train heads` output folder")
    p.add_argument("--latents", type=Path, action="append", required=True, help="the run's latent folders, in order")
    p.add_argument("--first", type=int, default=800, help="episodes of the first folder the trunk trained on")
    p.add_argument("--pos-weights", type=float, nargs="*", default=[], help="extra rows: real + dreams, these weights")
    p.add_argument("--temporal", type=int, default=0, help="also fit a head on the last K real frames (0: no)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    key, real = read_traces(args.run / "head_inputs_real.pt")
    dreams = {off: read_traces(args.run / f"head_inputs_dream{off}.pt")[1] for off in (0, 16)}
    episodes = load_latent_episodes(args.latents)
    if len(episodes) != len(real):
        raise SystemExit(f"{args.run} recorded {len(real)} episodes, the folders hold {len(episodes)}")
    model_cfg = WorldModelConfig.default()
    template = WorldModel(model_cfg).head
    bins = reward_bins(model_cfg.reward_bins, model_cfg.reward_symlog_max)
    train, held = split_episodes(episodes, HeadRefitConfig().val_fraction)
    first = [i for i in train if i < args.first]
    print(
        f"{len(episodes)} episodes ({key['episodes']}): {len(train)} training ({len(first)} in the first "
        f"{args.first}), {len(held)} held out\n"
    )
    print(
        "| head | learns from | dreams: precision / recall | recall crashed / landed | earlier dreams firing "
        "| real frames: precision / recall |"
    )
    print("|---|---|---|---|---|---|")
    score = Scorer(episodes, held, real, dreams, bins)
    score.row("heads recorded with the inputs (stage 4: trained with the trunk)", "", None)
    config = HeadRefitConfig()
    rows = [
        ("real frames", f"first {args.first} episodes' training split ({len(first)})", first, ("real",)),
        ("real frames", f"all training episodes ({len(train)})", train, ("real",)),
        ("real frames + dreams at the end", f"all ({len(train)})", train, ("real", 0)),
        ("**real frames + both dreams (shipped refit)**", f"all ({len(train)})", train, ("real", 0, 16)),
        ("both dreams only", f"all ({len(train)})", train, (0, 16)),
    ]
    for name, what, idx, parts in rows:
        head = fit_head(template, *examples(episodes, idx, real, dreams, parts), bins, config)
        score.row(name, what, head)
    for w in args.pos_weights:
        head = fit_head(
            template,
            *examples(episodes, train, real, dreams, ("real", 0, 16)),
            bins,
            replace(config, term_pos_weight=w),
        )
        score.row(f"real frames + both dreams, pos_weight {w:g}", f"all ({len(train)})", head)
    if args.temporal:
        t0 = time.time()
        logits = temporal_logits(real, episodes, train, held, args.temporal, config)
        score.row_logits(f"temporal: last {args.temporal} real frames (experiment)", f"all ({len(train)})", logits)
        print(f"\n(temporal head fitted in {time.time() - t0:.0f} s)")


def examples(episodes, idx, real, dreams, parts):
    """Inputs, rewards and terminations of the training examples `parts` ('real', or a dream offset) of `idx`."""
    x, r, t = [], [], []
    for part in parts:
        for i in idx:
            if part == "real":
                x.append(real[i].head_inputs)
                r.append(torch.as_tensor(episodes[i].rewards))
                t.append(torch.as_tensor(episodes[i].terminated))
            elif dreams[part][i] is not None:
                rr, tt = dream_segment(episodes[i], STEPS, part)
                x.append(dreams[part][i].head_inputs)
                r.append(torch.as_tensor(rr))
                t.append(torch.as_tensor(tt))
    return torch.cat(x), torch.cat(r).float(), torch.cat(t)


class Scorer:
    def __init__(self, episodes, held, real, dreams, bins) -> None:
        self.episodes, self.held, self.real, self.dreams, self.bins = episodes, held, real, dreams, bins
        self.end = [i for i in held if dreams[0][i] is not None]
        self.before = [i for i in held if dreams[16][i] is not None]

    def row(self, name: str, what: str, head: nn.Module | None) -> None:
        def logits(trace):
            return (
                trace.term_logits.numpy()
                if head is None
                else head_predictions(head, trace.head_inputs, self.bins)[1].numpy()
            )

        self.row_logits(
            name,
            what,
            {
                "real": {i: logits(self.real[i]) for i in self.held},
                0: {i: logits(self.dreams[0][i]) for i in self.end},
                16: {i: logits(self.dreams[16][i]) for i in self.before},
            },
        )

    def row_logits(self, name: str, what: str, logits: dict) -> None:
        eps = self.episodes
        real = termination_report([logits["real"][i] for i in self.held], [eps[i] for i in self.held], 2, 0.0)
        cells = [name, what]
        if 0 in logits:
            segs = [replace(eps[i], terminated=dream_segment(eps[i], STEPS, 0)[1]) for i in self.end]
            end = termination_report([logits[0][i] for i in self.end], segs, 2, 0.0)
            by = end["by_outcome"]
            cells += [
                f"{end['events']['precision']:.3f} / {end['events']['recall']:.3f}",
                f"{by['crashed']['recall']:.2f} / {by['landed']['recall']:.2f}",
                f"{np.mean([np.any(logits[16][i] > 0) for i in self.before]):.3f}",
            ]
        else:
            cells += ["", "", ""]
        cells.append(f"{real['events']['precision']:.3f} / {real['events']['recall']:.3f}")
        print("| " + " | ".join(cells) + " |", flush=True)


def temporal_logits(real, episodes, train, held, k: int, config: HeadRefitConfig) -> dict:
    """Fit a termination head on the last `k` real frames' head inputs (the first repeated at an episode's start);
    its held-out real-frame logits."""
    feats = torch.cat([real[i].head_inputs for i in range(len(episodes))])
    term = torch.cat([torch.as_tensor(e.terminated) for e in episodes]).float()
    lengths = [len(e.actions) for e in episodes]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    windows = torch.cat(
        [
            torch.as_tensor(s + np.clip(np.arange(n)[:, None] + np.arange(-k + 1, 1)[None], 0, None))
            for s, n in zip(starts, lengths, strict=True)
        ]
    )
    rows_of = {i: torch.arange(starts[i], starts[i] + lengths[i]) for i in range(len(episodes))}
    train_rows = torch.cat([rows_of[i] for i in train])
    d = feats.shape[1]
    torch.manual_seed(config.seed)
    head = nn.Sequential(
        nn.LayerNorm(d),
        nn.Linear(d, 64),
        nn.SiLU(),
        nn.Flatten(1),
        nn.Linear(64 * k, 128),
        nn.SiLU(),
        nn.Linear(128, 1),
    )
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / config.steps)))
    g = torch.Generator().manual_seed(config.seed)
    for _ in range(config.steps):
        b = train_rows[torch.randint(len(train_rows), (config.batch_size,), generator=g)]
        loss = F.binary_cross_entropy_with_logits(
            head(feats[windows[b]])[:, 0], term[b], pos_weight=torch.tensor(config.term_pos_weight)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return {"real": {i: head(feats[windows[rows_of[i]]])[:, 0].numpy() for i in held}}


if __name__ == "__main__":
    main()
